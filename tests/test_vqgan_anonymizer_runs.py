"""The VQGAN pipeline everywhere a method is chosen, with a tiny random-weight checkpoint:
`evaluate()` with metrics=bodies on a COCO-layout set of real demo photos, `deid anonymize
--anonymizer vqgan --target body` on a photo (keyed seeds: same key and camera, same output)
and on a short video (one appearance seed per track), and the Python API."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from pycocotools import mask as mask_utils
from vqgan_anonymizer_tiny import save_tiny, side_by_side

import deid
from deid.anonymizers.cli import compose_config, parser
from deid.anonymizers.runner import IncompleteAnonymizationError, anonymize
from deid.bodies import build_segmenter
from deid.media import VideoReader, VideoWriter, read_image, write_image
from deid.weights import resolve

ROOT = Path(__file__).resolve().parents[1]
KEY = "5e" * 16
PEOPLE = ("ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling")
TILE = (160, 200)  # width, height of one person photo


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("vqgan") / "tiny_vqgan.pt")


def _photo(demo_root: Path, name: str, index: int = 0) -> np.ndarray:
    photo = read_image(sorted((demo_root / "val" / name).glob("*.jpg"))[index])
    return cv2.resize(photo, TILE, interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- evaluate(), metrics=bodies
def _annotation(ann_id: int, image_id: int, mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "area": float(mask.sum()),
        "bbox": [x, y, w, h],
        "segmentation": {"size": list(mask.shape), "counts": rle["counts"].decode()},
    }


@pytest.fixture(scope="module")
def coco_demo(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """COCO 2017 layout of real demo photos: one validation photo of each identity, plus one
    image of two people (another photo of two of them); masks are MediaPipe's largest
    component (PNG images, so the originals are exact)."""
    root = tmp_path_factory.mktemp("coco")
    scenes = [[_photo(demo_root, name)] for name in PEOPLE]
    scenes.append([_photo(demo_root, "ben_afflek", 1), _photo(demo_root, "madonna", 1)])
    images, annotations = [], []
    with build_segmenter("mediapipe") as segmenter:
        for image_id, photos in enumerate(scenes, start=1):
            masks = []
            for k, photo in enumerate(photos):
                person = segmenter.segment(photo).instances[0]
                full = np.zeros((TILE[1], len(photos) * TILE[0] + 40 * (len(photos) - 1)), bool)
                full[:, k * (TILE[0] + 40) : k * (TILE[0] + 40) + TILE[0]] = person
                masks.append(full)
            image = side_by_side(photos, TILE, gap=40)
            name = f"{image_id:012d}.png"
            write_image(root / "val2017" / name, image)
            height, width = image.shape[:2]
            images.append({"id": image_id, "file_name": name, "height": height, "width": width})
            for mask in masks:
                annotations.append(_annotation(len(annotations) + 1, image_id, mask))
    spec = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(spec))
    return root, len(annotations)


def test_evaluate_bodies_on_a_coco_layout_demo_set(
    coco_demo: tuple[Path, int], ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deid_eval.suite import evaluate

    root, persons = coco_demo
    home = tmp_path / "home"  # ResNet-50 surely absent: the offline fallback, said in results
    (home / "weights").mkdir(parents=True)
    fid = resolve("fid_inception")
    (home / "weights" / fid.name).symlink_to(fid)
    monkeypatch.setenv("DEID_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DEID_WEIGHT_RESNET50_IMAGENET", raising=False)
    monkeypatch.delenv("DEID_ALLOW_DOWNLOAD", raising=False)
    overrides = [
        "model=vqgan",
        f"ckpt={ckpt}",
        "model.face_detector=null",
        "model.device=cpu",
        "device=cpu",
        "data=coco_persons",
        f"data.root={root}",
        "metrics=bodies",
        "k=1..3",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.output_dir={tmp_path / 'out'}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(cfg, run_dir=tmp_path / "run")
    assert result["method"] == "vqgan" and result["method_label"] == "VQGAN pipeline"
    section = result["metrics"]["silhouette_knn"]
    assert section["queries"] == section["gallery"] == persons == 7
    assert section["backbone"] == "fid_inception" and section["fallback_used"] is True
    assert section["anonymizer_counts"] == {"persons": 7, "synthesized": 7, "fallbacks": 0}
    reid = [section["reid"][str(k)] for k in (1, 2, 3)]
    assert 0.0 <= reid[0] <= reid[1] <= reid[2] <= 1.0
    assert result["dataset"]["images"] == 6 and result["dataset"]["persons"] == 7
    tables = (tmp_path / "run" / "tables.md").read_text()
    assert "VQGAN pipeline" in tables and "35.8" in tables  # the paper's row beside ours
    assert "offline fallback" in tables
    assert (tmp_path / "run" / "reid_vs_k.png").is_file()
    assert (tmp_path / "run" / "samples.png").is_file()


def test_evaluate_bodies_on_the_demo_set(
    demo_root: Path, ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`evaluate.py model=vqgan data=demo metrics=bodies`: the demo validation photos, persons
    from the offline segmenter (what `make demo` scores as data=demo_persons)."""
    from deid_eval.suite import evaluate

    monkeypatch.delenv("DEID_WEIGHT_RESNET50_IMAGENET", raising=False)
    overrides = [
        "model=vqgan",
        f"ckpt={ckpt}",
        "model.face_detector=null",
        "model.device=cpu",
        "device=cpu",
        "data=demo",
        f"data.root={demo_root}",
        "metrics=bodies",
        "metrics.backbone=fid_inception",
        "k=1..3",
        "limit=6",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.output_dir={tmp_path / 'out'}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(cfg, run_dir=tmp_path / "run")
    section = result["metrics"]["silhouette_knn"]
    assert section["queries"] == section["gallery"] == 6
    assert result["dataset"]["persons_from"].startswith("mediapipe")
    assert section["anonymizer_counts"]["persons"] == 6
    assert (
        section["anonymizer_counts"]["synthesized"] + section["anonymizer_counts"]["fallbacks"] == 6
    )


# ---------------------------------------------------------------- deid anonymize / the API
def _cli(inputs: list[Path], out: Path, ckpt: Path, *extra: str) -> dict:
    args = [*map(str, inputs), "-o", str(out), "--anonymizer", "vqgan", "--ckpt", str(ckpt)]
    args += ["--target", "body", "--detector", "dlib_hog", "--no-progress"]
    args += ["--set", "model.face_detector=null", "--set", "model.device=cpu", *extra]
    return anonymize(compose_config(parser().parse_args(args)))


@pytest.fixture(scope="module")
def photo(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = side_by_side([_photo(demo_root, "madonna"), _photo(demo_root, "elton_john")], TILE, 80)
    return write_image(tmp_path_factory.mktemp("photo") / "two.png", image)


def test_cli_photo_keyed_seeds_and_a_counted_fallback(
    photo: Path, ckpt: Path, tmp_path: Path
) -> None:
    image = read_image(photo)
    summary = _cli([photo], tmp_path / "a.png", ckpt, "--key", KEY, "--camera", "lobby")
    counts = summary["counts"]
    assert (counts["images"], counts["faces_found"], counts["anonymized"]) == (1, 2, 2)
    assert counts["fallbacks"] == 0 and summary["anonymizer"] == "vqgan"
    first = read_image(tmp_path / "a.png")
    assert (first != image).any(axis=2).mean() > 0.3
    _cli([photo], tmp_path / "b.png", ckpt, "--key", KEY, "--camera", "lobby")
    assert np.array_equal(read_image(tmp_path / "b.png"), first)  # same key + camera
    _cli([photo], tmp_path / "c.png", ckpt, "--key", KEY, "--camera", "garage")
    assert not np.array_equal(read_image(tmp_path / "c.png"), first)  # other camera
    # a person too small to synthesize is masked out and counted; --strict fails on it
    with pytest.raises(IncompleteAnonymizationError, match="regions vqgan could not process"):
        _cli([photo], tmp_path / "d.png", ckpt, "--strict", "--set", "model.min_area=100000")
    saved = json.loads((tmp_path / "d.anonymize_summary.json").read_text())
    assert saved["counts"]["fallbacks"] == 0 and saved["counts"]["method_fallbacks"] >= 2
    (reason,) = saved["fallback_reasons"]
    assert reason == "vqgan could not synthesize a person (person mask too small): maskout"
    masked = read_image(tmp_path / "d.png")
    assert (masked[(masked != image).any(axis=2)] == 0).mean() > 0.9  # silhouettes filled black


def test_python_api_on_an_array(photo: Path, ckpt: Path) -> None:
    image = read_image(photo)
    out, report = deid.anonymize_image(
        image,
        method="vqgan",
        ckpt=ckpt,
        target="body",
        detector="dlib_hog",
        key=KEY,
        link_photos=False,
        **{"model.face_detector": None, "model.device": "cpu"},
    )
    assert report["method"] == "vqgan" and report["fallbacks"] == report["method_fallbacks"] == []
    assert len(report["identities"]) == 2 and out.shape == image.shape
    assert (out != image).any(axis=2).mean() > 0.3


def test_cli_video_keeps_frames_and_one_seed_per_track(
    demo_root: Path, ckpt: Path, tmp_path: Path
) -> None:
    photos = [_photo(demo_root, "madonna"), _photo(demo_root, "jerry_seinfeld")]
    video = tmp_path / "walk.mp4"
    with VideoWriter(video, 5.0, (480, 240)) as writer:
        for t in range(6):
            frame = np.full((240, 480, 3), 70, np.uint8)
            frame[20:220, 10 + 4 * t : 170 + 4 * t] = photos[0]
            frame[20:220, 300 - 4 * t : 460 - 4 * t] = photos[1]
            writer.write(frame)
    summary = _cli([video], tmp_path / "out.mp4", ckpt, "--key", KEY)
    with VideoReader(video) as src, VideoReader(tmp_path / "out.mp4") as dst:
        source, written = list(src), list(dst)
    assert len(written) == len(source) == 6
    (record,) = summary["files"]
    assert record["frames"] == 6 and record["fallbacks"] == 0
    assert record["anonymized"] == record["faces_found"] + record["faces_interpolated"] >= 10
    assert len(set(record["identities"].values())) == 2  # two tracks, two appearance seeds
    changed = [
        (a.astype(int) - b).__abs__().max(axis=2) > 30 for a, b in zip(source, written, strict=True)
    ]
    assert all(c[40:200, 40:130].mean() > 0.3 for c in changed)  # the left person, every frame
