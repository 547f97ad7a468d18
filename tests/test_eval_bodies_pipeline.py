"""evaluate.py's bodies suite (silhouette k-NN, protocols.md 5) end to end on real photos.

A tiny Supervisely Person export is built from skimage's astronaut and the demo photos, each
with a body-shaped polygon (one image holds two persons). ResNet-50 weights are made surely
absent, so the suite must fall back to FID Inception and say so. Invariants: `original` finds
every person's own original first; mask-out leaves only the silhouette's outline, which cannot
tell persons apart, so most queries miss; a face method reuses the cached gallery.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from deid.media import read_image, write_image
from deid.weights import resolve, sha256_of
from deid_eval.pipelines import persons as persons_pipeline
from deid_eval.pipelines.persons import resolve_ks
from deid_eval.suite import evaluate

ROOT = Path(__file__).resolve().parents[1]
SIZE = (200, 240)  # width, height of every fixture image
# A rough person (head, shoulders, torso) as fractions of the image width/height.
BODY = [
    (0.38, 0.04), (0.62, 0.04), (0.68, 0.34), (0.94, 0.55), (0.97, 0.99),
    (0.03, 0.99), (0.06, 0.55), (0.32, 0.34),
]  # fmt: skip


def _polygon(left: float, width: float, height: float) -> dict:
    exterior = [[round(left + x * (width - 1)), round(y * (height - 1))] for x, y in BODY]
    return {
        "classTitle": "person_poly",
        "geometryType": "polygon",
        "points": {"exterior": exterior, "interior": []},
    }


def _photos() -> list[np.ndarray]:
    """The astronaut, the first validation photo of each demo identity and a second Ben Affleck."""
    from skimage import data

    folders = sorted((ROOT / "data" / "demo" / "val").iterdir())
    photos = [data.astronaut()] + [read_image(sorted(f.glob("*.jpg"))[0]) for f in folders]
    photos += [read_image(sorted(f.glob("*.jpg"))[1]) for f in folders[:1]]
    return [cv2.resize(p, SIZE, interpolation=cv2.INTER_AREA) for p in photos]


def _write_supervisely(root: Path) -> int:
    """Five one-person images and one two-person image; returns the number of persons."""
    photos = _photos()
    scenes = [(photo, [_polygon(0, *SIZE)]) for photo in photos[:5]]
    pair = np.concatenate(photos[5:7], axis=1)
    scenes.append((pair, [_polygon(0, *SIZE), _polygon(SIZE[0], *SIZE)]))
    for index, (image, objects) in enumerate(scenes):
        name = f"person_{index}.png"
        write_image(root / "ds1" / "img" / name, image)
        height, width = image.shape[:2]
        ann = {"size": {"height": height, "width": width}, "tags": [], "objects": objects}
        (root / "ds1" / "ann").mkdir(parents=True, exist_ok=True)
        (root / "ds1" / "ann" / f"{name}.json").write_text(json.dumps(ann))
    (root / "meta.json").write_text(json.dumps({"classes": [], "tags": []}))
    return sum(len(objects) for _, objects in scenes)


def _cfg(tmp: Path, model: str, *extra: str):
    overrides = [
        f"model={model}",
        "data=supervisely",
        f"data.root={tmp / 'supervisely'}",
        "metrics=bodies",
        f"paths.cache_dir={tmp / 'cache'}",
        f"paths.output_dir={tmp / 'outputs'}",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="evaluate", overrides=overrides)


def _home_without_resnet50(tmp: Path) -> Path:
    """A fresh $DEID_HOME holding only the (already converted) FID Inception weights.

    Why: ResNet-50 must be surely missing, while re-converting FID Inception costs ~8 s.
    """
    fid = resolve("fid_inception")
    home = tmp / "home"
    (home / "weights").mkdir(parents=True)
    (home / "weights" / fid.name).symlink_to(fid)
    return home


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("bodies")
    persons = _write_supervisely(tmp / "supervisely")
    results: dict[str, dict] = {"_persons": {"count": persons, "root": tmp / "supervisely"}}
    home = _home_without_resnet50(tmp)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEID_HOME", str(home))
        patch.setenv("TORCH_HOME", str(tmp / "torch"))
        patch.delenv("DEID_WEIGHT_RESNET50_IMAGENET", raising=False)
        patch.delenv("DEID_ALLOW_DOWNLOAD", raising=False)
        for model, k in (("original", "1..3"), ("maskout", "1..3"), ("blur17", "10")):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                results[model] = evaluate(_cfg(tmp, model, f"k={k}"), run_dir=tmp / model)
            results[model]["_dir"] = tmp / model
            results[model]["_warnings"] = [str(w.message) for w in caught]
        results["_persons"]["fid_sha"] = sha256_of(resolve("fid_inception"))
        results["_persons"]["limited"] = _cfg(tmp, "original", "limit=2")
    return results


def test_original_finds_every_person_first(runs: dict[str, dict]) -> None:
    result = runs["original"]
    section = result["metrics"]["silhouette_knn"]
    persons = runs["_persons"]["count"]
    assert section["reid"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    assert section["deid_success"] == {"1": 0.0, "2": 0.0, "3": 0.0}
    assert section["queries"] == section["gallery"] == persons == 7
    assert result["dataset"] == {
        "name": "supervisely",
        "root": str(runs["_persons"]["root"]),
        "split": "all",
        "images": 6,
        "persons": 7,
        "empty_masks": 0,
        "images_with_faces": 0,
    }
    assert result["protocol"]["ks"] == [1, 2, 3]
    assert (result["_dir"] / "samples.png").is_file()
    assert (result["_dir"] / "results.json").is_file()


def test_missing_resnet50_falls_back_and_says_so(runs: dict[str, dict]) -> None:
    for model in ("original", "maskout", "blur17"):
        assert any("resnet50 weights are missing" in w for w in runs[model]["_warnings"])
    saved = json.loads((runs["original"]["_dir"] / "results.json").read_text())
    section = saved["metrics"]["silhouette_knn"]
    assert section["backbone"] == "fid_inception"
    assert section["fallback_used"] is True
    assert section["weights_sha256"] == runs["_persons"]["fid_sha"]
    assert saved["protocol"]["requested_backbone"] == "resnet50"
    assert saved["weights"] == {"fid_inception": runs["_persons"]["fid_sha"]}


def test_maskout_hides_who_is_who(runs: dict[str, dict]) -> None:
    """Black silhouettes of one shape look alike: at most a few find their own original."""
    reid = runs["maskout"]["metrics"]["silhouette_knn"]["reid"]
    assert reid["1"] <= 0.25
    assert reid["1"] <= reid["2"] <= reid["3"]
    assert runs["maskout"]["metrics"]["silhouette_knn"]["deid_success"]["1"] >= 0.75
    assert "silhouette_gallery" in runs["maskout"]["cache"]["hits"]


def test_face_method_detects_faces_and_reuses_the_gallery(runs: dict[str, dict]) -> None:
    result = runs["blur17"]
    assert "silhouette_gallery" in result["cache"]["hits"]
    assert "silhouette_gallery" not in result["cache"]["computed"]
    assert "body_faces" in result["cache"]["computed"]
    assert result["dataset"]["images_with_faces"] >= 4  # dlib HOG finds the frontal faces
    assert result["protocol"]["face_detector"] == {"name": "dlib_hog", "threshold": 0.0}
    assert set(result["weights"]) == {"fid_inception", "dlib_hog"}
    reid = result["metrics"]["silhouette_knn"]["reid"]
    assert 0.0 <= reid["1"] <= reid["2"] <= reid["3"] <= 1.0


def test_blur17_drops_ks_beyond_the_gallery(runs: dict[str, dict]) -> None:
    """k=10 means the paper's 1..10; a gallery of 7 persons cannot rank 8 to 10."""
    result = runs["blur17"]
    assert any("[8, 9, 10] exceed the 7 gallery persons" in w for w in result["_warnings"])
    assert result["protocol"]["ks"] == list(range(1, 8))
    assert list(result["metrics"]["silhouette_knn"]["reid"]) == [str(k) for k in range(1, 8)]


def test_limit_keeps_whole_images(runs: dict[str, dict]) -> None:
    records, groups, info = persons_pipeline.person_records(runs["_persons"]["limited"])
    assert [g.image_id for g in groups] == ["ds1/img/person_0.png", "ds1/img/person_1.png"]
    assert [g.persons for g in groups] == [(0,), (1,)]
    assert [r.image_id for r in records] == [g.image_id for g in groups]
    assert info == {"name": "supervisely", "root": str(runs["_persons"]["root"]), "split": "all"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, list(range(1, 11))), (12, list(range(1, 13))), ("1..3", [1, 2, 3]), ("1,5", [1, 5])],
)
def test_ks_default_to_the_papers_one_to_ten(value, expected) -> None:
    assert resolve_ks(value) == expected


def test_a_photo_set_without_masks_is_segmented_as_demo_persons(demo_root: Path) -> None:
    """`data=demo metrics=bodies` (the demo photos have no person masks) reads the same persons
    as `data=demo_persons`: one per validation photo, its mask from the offline segmenter."""
    found = {}
    for data in ("demo", "demo_persons"):
        overrides = [f"data={data}", f"data.root={demo_root}", "metrics=bodies"]
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="evaluate", overrides=overrides)
        found[data] = persons_pipeline.person_records(cfg)
    (records, groups, info), (expected, _, _) = found["demo"], found["demo_persons"]
    assert [r.path for r in records] == [r.path for r in expected]
    assert len(groups) == len(records) == len(list(demo_root.glob("val/*/*.jpg")))
    assert info["persons_from"].startswith("mediapipe")
    mask = records[0].load_mask()
    assert mask.dtype == bool and 0.02 < mask.mean() < 0.98
    assert np.array_equal(mask, expected[0].load_mask())
