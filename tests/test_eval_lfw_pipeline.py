"""The LFW suite end to end on a tiny LFW built from the demo photos, plus its face rules.

The fixture follows the official layout (lfw/<name>/<name>_<i:04d>.jpg, 250x250, pairs.txt
with ten folds of matched then mismatched pairs) so the real parser, MTCNN, dlib landmarks and
FaceNet casia all run; `original` must verify well and pixelation must hurt verification.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from deid.faces import Face
from deid.media import read_image, write_image
from deid_eval.pipelines.lfw import (
    anonymized_faces,
    fallback_face,
    limit_pairs,
    locate_chunk,
    original_faces,
    split_embedders,
)

ROOT = Path(__file__).resolve().parents[1]
IDENTITIES = ("ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling")
PER_IDENTITY = 5  # the val photos: MTCNN finds a face in each after the square crop
HALF_FOLD = 2  # matched (and mismatched) pairs per fold


def lfw_size(image: np.ndarray) -> np.ndarray:
    """The centred square, resized to LFW's 250x250."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    return cv2.resize(square, (250, 250), interpolation=cv2.INTER_AREA)


def pair_lines() -> list[str]:
    """Ten folds of HALF_FOLD matched then HALF_FOLD mismatched pairs, varied across folds."""
    lines = [f"10\t{HALF_FOLD}"]
    for fold in range(10):
        for m in range(HALF_FOLD):
            name = IDENTITIES[(fold + m) % 5]
            i = (fold + 2 * m) % PER_IDENTITY
            j = (i + 1 + fold % 4) % PER_IDENTITY
            lines.append(f"{name}\t{i + 1}\t{j + 1}")
        for m in range(HALF_FOLD):
            first, second = IDENTITIES[(fold + m) % 5], IDENTITIES[(fold + 2 * m + 1) % 5]
            i, j = (fold + m) % PER_IDENTITY, (fold + 2 * m + 3) % PER_IDENTITY
            lines.append(f"{first}\t{i + 1}\t{second}\t{j + 1}")
    return lines


@pytest.fixture(scope="module")
def tiny_lfw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lfw_root")
    demo = ROOT / "data" / "demo" / "val"
    for name in IDENTITIES:
        photos = sorted((demo / name).glob("*.jpg"))[:PER_IDENTITY]
        if len(photos) < PER_IDENTITY:
            pytest.fail(f"demo photos missing under {demo / name}; run `make setup`", pytrace=False)
        for number, photo in enumerate(photos, start=1):
            target = root / "lfw" / name / f"{name}_{number:04d}.jpg"
            write_image(target, lfw_size(read_image(photo)))
    (root / "pairs.txt").write_text("\n".join(pair_lines()) + "\n")
    return root


def lfw_config(root: Path, tmp: Path, model: str):
    overrides = [
        "data=lfw",
        f"data.root={root}",
        f"data.pairs={root / 'pairs.txt'}",
        "metrics=lfw",
        "metrics.embedders=[facenet_casia]",
        "metrics.samples=4",
        f"model={model}",
        f"paths.cache_dir={tmp / 'cache'}",
        f"paths.output_dir={tmp / model}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="evaluate", overrides=overrides)


@pytest.fixture(scope="module")
def runs(tiny_lfw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """`original` then `pixel16`, sharing one cache folder."""
    from deid_eval.suite import evaluate

    tmp = tmp_path_factory.mktemp("lfw_runs")
    return {
        model: evaluate(lfw_config(tiny_lfw, tmp, model), run_dir=tmp / model)
        for model in ("original", "pixel16")
    }


def test_original_verifies_and_pixelation_hurts(runs: dict[str, dict]) -> None:
    clean = runs["original"]["metrics"]["lfw"]["facenet_casia"]
    pixel = runs["pixel16"]["metrics"]["lfw"]["facenet_casia"]
    print(f"TAR original {clean['tar_mean']:.3f}, pixel16 {pixel['tar_mean']:.3f}")
    assert clean["tar_mean"] >= 0.6
    assert pixel["tar_mean"] <= clean["tar_mean"] - 0.3
    assert clean["anonymized_face_misses"] == 0
    assert clean["original_face_misses"] == 0
    assert len(clean["thresholds"]) == 10
    for entry in (clean, pixel):
        assert 0.0 <= entry["far_mean"] <= 1.0 and 0.0 <= entry["accuracy_mean"] <= 1.0


def test_dataset_info_and_cache_reuse(runs: dict[str, dict]) -> None:
    info = runs["original"]["dataset"]
    assert info["name"] == "lfw" and info["folds"] == 10
    assert info["pairs"] == 10 * 2 * HALF_FOLD
    assert info["images"] == len({p for line in pair_lines()[1:] for p in _paths(line)})
    assert runs["original"]["cache"]["hits"] == []
    assert {"lfw_faces", "lfw_embeddings"} <= set(runs["pixel16"]["cache"]["hits"])
    assert "mtcnn" in runs["pixel16"]["weights"]


def test_results_files_written(runs: dict[str, dict]) -> None:
    for model, results in runs.items():
        run_dir = Path(results["config"]["paths"]["output_dir"])
        saved = json.loads((run_dir / "results.json").read_text())
        assert "facenet_casia" in saved["metrics"]["lfw"], model
        assert (run_dir / "samples.png").is_file()


def _paths(line: str) -> list[str]:
    fields = line.split("\t")
    if len(fields) == 3:
        return [f"{fields[0]}/{fields[1]}", f"{fields[0]}/{fields[2]}"]
    return [f"{fields[0]}/{fields[1]}", f"{fields[2]}/{fields[3]}"]


# ----------------------------------------------------------------------- rules, no models
class NoFaceDetector:
    """A detector that never finds anything."""

    def detect(self, image: np.ndarray) -> list[Face]:
        return []

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        return [[] for _ in images]


class FixedLandmarks:
    def add_landmarks(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        return [face.with_landmarks(np.zeros((68, 2))) for face in faces]


def test_missed_original_falls_back_to_centred_box() -> None:
    image = np.zeros((250, 250, 3), np.uint8)
    faces, fell_back = original_faces(FixedLandmarks(), image, NoFaceDetector().detect(image))
    assert fell_back and len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert (x0 + x1) / 2 == pytest.approx(125) and (y0 + y1) / 2 == pytest.approx(125)
    assert x1 - x0 == pytest.approx(250 / 2.2)
    assert faces[0].landmarks is not None and faces[0].landmarks.shape == (68, 2)
    assert fallback_face((100, 300)).width == pytest.approx(100 / 2.2)


def test_missed_anonymized_face_reuses_original_box() -> None:
    outputs = [np.zeros((250, 250, 3), np.uint8) for _ in range(3)]
    boxes = [Face((10 * i, 10, 100 + 10 * i, 120), 0.9) for i in range(3)]
    chosen, missed = anonymized_faces(NoFaceDetector(), outputs, boxes)
    assert missed == [True, True, True]
    assert [face.box for face in chosen] == [face.box for face in boxes]


class NoFaceModels:
    def detector(self) -> NoFaceDetector:
        return NoFaceDetector()


def test_chunk_misses_count_changed_and_fallen_back_images() -> None:
    """Unchanged output: missed iff its original fell back; changed: iff MTCNN finds nothing."""
    images = [np.full((250, 250, 3), value, np.uint8) for value in (10, 20, 30)]
    outputs = [images[0].copy(), images[1].copy(), np.zeros((250, 250, 3), np.uint8)]
    chosen = [Face((50, 50, 150, 150), 0.9), fallback_face((250, 250)), Face((1, 2, 3, 4), 0.9)]
    fell_back = np.array([False, True, False])
    located = locate_chunk(NoFaceModels(), images, outputs, [0, 1, 2], chosen, fell_back)
    assert located.changed == [2]
    assert [face.box for face in located.faces] == [chosen[2].box]
    assert located.misses == 2


def test_limit_keeps_every_fold_and_both_classes(tiny_lfw: Path) -> None:
    from deid.datasets.lfw import parse_pairs

    pairs = parse_pairs(tiny_lfw / "pairs.txt")
    kept = limit_pairs(pairs, 1)
    assert len(kept) == 20
    assert {(p.fold, p.same) for p in kept} == {(f, s) for f in range(10) for s in (True, False)}
    assert limit_pairs(pairs, None) == pairs


def test_missing_embedder_weight_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from deid import weights
    from deid.errors import DeidError

    monkeypatch.setattr(weights, "is_available", lambda name: name != "facenet_vggface2")
    with pytest.warns(UserWarning, match="facenet_vggface2"):
        available, skipped = split_embedders(["facenet_casia", "facenet_vggface2"])
    assert available == ["facenet_casia"] and "facenet_vggface2" in skipped
    monkeypatch.setattr(weights, "is_available", lambda name: False)
    with pytest.raises(DeidError), pytest.warns(UserWarning):
        split_embedders(["facenet_casia"])
