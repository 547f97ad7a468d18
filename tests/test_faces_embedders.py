"""Identity embedders on real photos: same person closer than different people."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deid import weights
from deid.errors import DeidError, MissingWeightError
from deid.faces import Face, FaceEmbedder, LandmarkPredictor, build_detector, build_embedder
from deid.media import read_image

PER_IDENTITY = 3  # val photos per identity (5 identities -> 15 faces)


@pytest.fixture(scope="module")
def demo_faces(demo_root: Path) -> tuple[list[np.ndarray], list[Face], np.ndarray]:
    """The first photos per identity in which dlib HOG finds exactly one clear face."""
    detector = build_detector("dlib_hog", score_threshold=0.3)
    images, faces, labels = [], [], []
    for folder in sorted((demo_root / "val").iterdir()):
        kept = 0
        for path in sorted(folder.glob("*.jpg")):
            image = read_image(path)
            found = detector.detect(image)
            if len(found) == 1:
                images.append(image)
                faces.append(found[0])
                labels.append(folder.name)
                kept += 1
            if kept == PER_IDENTITY:
                break
        assert kept == PER_IDENTITY, f"only {kept} usable photos of {folder.name}"
    return images, faces, np.array(labels)


@pytest.fixture(scope="module")
def predictor() -> LandmarkPredictor:
    return LandmarkPredictor()


@pytest.fixture(scope="module", params=["dlib", "facenet_casia"])
def embedder(request: pytest.FixtureRequest, predictor: LandmarkPredictor) -> FaceEmbedder:
    options = {"landmarks": predictor} if request.param == "dlib" else {}
    return build_embedder(request.param, batch_size=8, **options)


@pytest.fixture(scope="module")
def embeddings(
    embedder: FaceEmbedder, demo_faces: tuple[list[np.ndarray], list[Face], np.ndarray]
) -> np.ndarray:
    images, faces, _ = demo_faces
    return embedder.embed(images, faces)


def test_shape_and_unit_norm(embedder: FaceEmbedder, embeddings: np.ndarray) -> None:
    assert embeddings.shape == (5 * PER_IDENTITY, embedder.dim)
    assert embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_same_identity_is_closer(
    embedder: FaceEmbedder,
    embeddings: np.ndarray,
    demo_faces: tuple[list[np.ndarray], list[Face], np.ndarray],
) -> None:
    labels = demo_faces[2]
    squared = ((embeddings[:, None] - embeddings[None]) ** 2).sum(-1)  # 0..4
    same = labels[:, None] == labels[None]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    d_same, d_diff = squared[same & off_diagonal], squared[~same]
    print(
        f"{embedder.name}: same {d_same.mean():.3f} (max {d_same.max():.3f}), "
        f"different {d_diff.mean():.3f} (min {d_diff.min():.3f})"
    )
    assert d_same.mean() < 0.6 * d_diff.mean()
    # every identity's own photos are closer on average than any other identity's
    for name in np.unique(labels):
        rows = labels == name
        own = squared[np.ix_(rows, rows)][~np.eye(rows.sum(), dtype=bool)].mean()
        others = [squared[np.ix_(rows, labels == o)].mean() for o in np.unique(labels) if o != name]
        assert own < min(others), name
    # and each photo's nearest other photo shows the same person (1-NN re-identification)
    np.fill_diagonal(squared, np.inf)
    assert (labels[squared.argmin(1)] == labels).mean() == 1.0


def test_batching_does_not_change_results(
    embedder: FaceEmbedder,
    embeddings: np.ndarray,
    demo_faces: tuple[list[np.ndarray], list[Face], np.ndarray],
) -> None:
    images, faces, _ = demo_faces
    saved = embedder.batch_size
    embedder.batch_size = 2
    try:
        again = embedder.embed(images[:5], faces[:5])
    finally:
        embedder.batch_size = saved
    assert np.allclose(again, embeddings[:5], atol=1e-5)


def test_pairing_rules(embedder: FaceEmbedder, astronaut: np.ndarray) -> None:
    assert embedder.embed([], []).shape == (0, embedder.dim)
    with pytest.raises(ValueError, match="one to one"):
        embedder.embed([astronaut], [])


def test_dlib_uses_given_68_landmarks(
    predictor: LandmarkPredictor, demo_faces: tuple[list[np.ndarray], list[Face], np.ndarray]
) -> None:
    images, faces, _ = demo_faces
    embedder = build_embedder("dlib", landmarks=predictor)
    with_points = predictor.add_landmarks(images[0], [faces[0]])
    assert np.allclose(
        embedder.embed(images[:1], with_points), embedder.embed(images[:1], faces[:1]), atol=1e-6
    )


def test_facenet_crop_is_the_protocol_crop(
    demo_faces: tuple[list[np.ndarray], list[Face], np.ndarray],
) -> None:
    from facenet_pytorch import extract_face

    images, faces, _ = demo_faces
    embedder = build_embedder("facenet_casia")
    ref = extract_face(images[0], np.array(faces[0].box), image_size=160, margin=14)
    mine = embedder.crop_face(images[0], faces[0])
    assert np.array_equal(mine.astype(np.float32), ref.permute(1, 2, 0).numpy())
    assert np.allclose(embedder.embed_crops(mine[None]), embedder.embed(images[:1], faces[:1]))


def test_vggface2_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEID_HOME", str(tmp_path))
    monkeypatch.delenv("DEID_WEIGHT_FACENET_VGGFACE2", raising=False)
    monkeypatch.delenv("DEID_ALLOW_DOWNLOAD", raising=False)
    if weights.is_available("facenet_vggface2"):
        pytest.skip("facenet_vggface2 is installed on this machine")
    with pytest.raises(MissingWeightError, match="facenet_vggface2.*missing"):
        build_embedder("facenet_vggface2")


def test_unknown_embedder_and_option() -> None:
    with pytest.raises(DeidError, match="known: dlib, facenet_casia, facenet_vggface2"):
        build_embedder("arcface")
    with pytest.raises(DeidError, match="no option weights"):
        build_embedder("facenet_casia", weights="other")
