"""Face preprocessing (deid.prep) on real photos with the real dlib detector and landmark model."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from deid.errors import DeidError
from deid.faces import build_detector, paste_back
from deid.faces.align import antialiased_crop
from deid.faces.render import face_mask, landmark_image
from deid.media import read_image, write_image
from deid.prep.faces import (
    CropSettings,
    FaceCropper,
    FaceEntry,
    ImageTask,
    map_paths,
    preprocess,
    read_manifest,
)
from deid.prep.faces import read_face_failures as read_failures
from deid.prep.manifest import MANIFEST, ManifestWriter
from deid.prep.run import crop_stems

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = ("ben_afflek", "jerry_seinfeld")


def compose_cfg(root: Path, out: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(
            config_name="preprocess",
            overrides=["data=image_folder", f"data.root={root}", f"out={out}", *overrides],
        )


@pytest.fixture(scope="module")
def dataset(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/<identity>/*: 2 people x 2 photos, a two-face photo, and three bad files."""
    from skimage import data

    root = tmp_path_factory.mktemp("faces")
    photos = {name: sorted((demo_root / "train" / name).glob("*.jpg"))[:3] for name in PEOPLE}
    for name, paths in photos.items():
        (root / name).mkdir()
        for path in paths[:2]:
            shutil.copy(path, root / name / path.name)
    left, right = (read_image(photos[name][2]) for name in PEOPLE)
    height = min(left.shape[0], right.shape[0])
    pair = [
        cv2.resize(im, (round(im.shape[1] * height / im.shape[0]), height)) for im in (left, right)
    ]
    (root / "pair").mkdir()
    write_image(root / "pair" / "two_faces.png", np.hstack(pair))
    bad = root / "bad"
    bad.mkdir()
    jpeg = photos[PEOPLE[0]][0].read_bytes()
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (bad / "empty.jpg").write_bytes(b"")
    write_image(bad / "coffee.png", data.coffee())  # a real photo without a face
    return root


@pytest.fixture(scope="module")
def run_one(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pp") / "w1"
    summary = preprocess(compose_cfg(dataset, out, "workers=1", "save_maps=true"))
    return out, summary


def test_every_face_gets_a_row_and_bad_files_a_failure(dataset: Path, run_one) -> None:
    out, summary = run_one
    entries = read_manifest(out)
    by_source: dict[str, list[FaceEntry]] = {}
    for entry in entries:
        by_source.setdefault(entry.source, []).append(entry)
    good = [f"{name}/{p.name}" for name in PEOPLE for p in sorted((dataset / name).iterdir())]
    for source in good:
        assert [e.face for e in by_source.pop(source)] == [0]
    pair = by_source.pop("pair/two_faces.png")
    assert [e.face for e in pair] == [0, 1]
    assert pair[0].box[0] < pair[1].box[0]  # numbered left to right
    assert not by_source  # nothing else
    assert all(e.status == "ok" and e.identity == e.source.split("/")[0] for e in entries)
    assert all(e.split == "all" and e.transform.size == (178, 218) for e in entries)
    assert pair[1].crop == "crops/pair/two_faces_1.png"

    failures = {f["source"]: f for f in read_failures(out)}
    assert sorted(failures) == ["bad/coffee.png", "bad/empty.jpg", "bad/truncated.jpg"]
    reasons = {source: f["reason"] for source, f in failures.items()}
    assert reasons == {
        "bad/coffee.png": "no_face",
        "bad/empty.jpg": "empty",
        "bad/truncated.jpg": "unreadable",
    }
    assert "truncated" in failures["bad/truncated.jpg"]["detail"]
    assert summary["images"] == 8 and summary["done"] == 8
    assert summary["faces"] == 6 and summary["images_with_faces"] == 5
    assert summary["failures"] == {"empty": 1, "no_face": 1, "unreadable": 1}
    assert (out / "summary.json").is_file()


def test_crops_maps_and_transform_agree_with_the_photo(dataset: Path, run_one) -> None:
    out, _ = run_one
    detector = build_detector("dlib_hog", upsample=1)
    for entry in read_manifest(out):
        image = read_image(dataset / entry.source)
        saved = read_image(entry.crop_path(out))
        # the saved transform describes the saved crop exactly (PNG is lossless)
        np.testing.assert_array_equal(saved, antialiased_crop(image, entry.transform))
        points = entry.crop_landmarks()
        np.testing.assert_allclose(
            entry.transform.apply_inverse(points), entry.landmarks, atol=1e-6
        )
        # the inner eye corners sit on the crop's centre line, as the CIAGAN crop is defined
        eyes = points[[39, 42]].mean(axis=0)
        np.testing.assert_allclose(eyes, [88.5, 108.5], atol=1e-6)

        # landmark image and mask sit on the face that dlib finds in the crop pixels
        mask = face_mask(points, (178, 218))
        lines = landmark_image(points, (178, 218))[..., 0]
        faces = detector.detect(saved)
        assert faces, entry.source
        x0, y0, x1, y1 = max(faces, key=lambda f: f.area).box
        my, mx = np.argwhere(mask > 0).mean(axis=0)
        assert x0 <= mx <= x1 and y0 <= my <= y1
        ly, lx = np.argwhere(lines > 0).mean(axis=0)
        assert x0 <= lx <= x1 and y0 <= ly <= y1
        hull = np.zeros_like(mask)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.rint(points).astype(np.int32)), 255)
        hy, hx = np.argwhere(hull > 0).mean(axis=0)
        assert np.hypot(mx - hx, my - hy) < 10  # centred on the landmarks' hull
        assert (mask[hull > 0] > 0).mean() > 0.8  # and covering most of it

        # save_maps=true wrote the same maps at crop size
        landmarks_png, mask_png = map_paths(out, entry.crop)
        np.testing.assert_array_equal(read_image(mask_png)[..., 0], mask)
        np.testing.assert_array_equal(read_image(landmarks_png)[..., 0], lines)


def _paste_error(image: np.ndarray, crop: np.ndarray, transform, shift=(0.0, 0.0)) -> float:
    """Mean abs grey difference between the photo and the crop pasted `shift` pixels away."""
    matrix = transform.matrix.copy()
    matrix[:, 2] -= matrix[:, :2] @ np.asarray(shift, dtype=np.float64)
    pasted = paste_back(image, crop, type(transform)(matrix, transform.size))
    left, top, right, bottom = transform.source_rect()
    x0, y0 = max(0, int(left) + 3), max(0, int(top) + 3)
    x1, y1 = min(image.shape[1], int(right) - 3), min(image.shape[0], int(bottom) - 3)
    a = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float64)
    b = cv2.cvtColor(pasted[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(np.abs(a - b).mean())


def test_saved_transform_pastes_the_crop_back_within_a_pixel(dataset: Path, run_one) -> None:
    """Pasted back with its saved transform, each crop matches the photo better than when
    moved half a pixel in any direction: the paste-back is exact to within half a pixel."""
    out, _ = run_one
    moves = [(dx, dy) for dx in (-0.5, 0.0, 0.5) for dy in (-0.5, 0.0, 0.5) if dx or dy]
    for entry in read_manifest(out):
        image = read_image(dataset / entry.source)
        crop = read_image(entry.crop_path(out))
        error = _paste_error(image, crop, entry.transform)
        assert error < 3.0, (entry.source, error)  # grey levels: resampling loss only
        moved = [_paste_error(image, crop, entry.transform, move) for move in moves]
        assert error < min(moved), (entry.source, error, moved)


def test_rerun_skips_everything_and_adds_no_rows(dataset: Path, run_one) -> None:
    out, _ = run_one
    before = (out / MANIFEST).read_text()
    failures_before = (out / "failures.csv").read_text()
    summary = preprocess(compose_cfg(dataset, out, "workers=1"))
    assert summary["done"] == 0 and summary["skipped_already_done"] == 8
    assert (out / MANIFEST).read_text() == before
    assert (out / "failures.csv").read_text() == failures_before
    keys = [e.key for e in read_manifest(out)]
    assert len(keys) == len(set(keys)) == 6


def test_resume_after_a_crash_redoes_only_the_unfinished_image(dataset: Path, run_one, tmp_path):
    out, _ = run_one
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    lines = (crashed / MANIFEST).read_text().splitlines(keepends=True)
    pair_rows = [i for i, line in enumerate(lines) if line.startswith("pair/")]
    # the two-face image lost its second row, another image's row appears twice, and a
    # half-written row trails the file
    torn = lines[pair_rows[1]][:200]
    kept = [line for i, line in enumerate(lines) if i != pair_rows[1]]
    (crashed / MANIFEST).write_text("".join([*kept, lines[1], torn]))
    with ManifestWriter(crashed, FaceEntry) as writer:  # opening repairs the file
        assert "pair/two_faces.png" not in writer.done and writer.rows == 4
    summary = preprocess(compose_cfg(dataset, crashed, "workers=1"))
    assert summary["done"] == 1 and summary["skipped_already_done"] == 7
    assert (crashed / MANIFEST).read_text() == (out / MANIFEST).read_text()


def test_two_workers_give_the_same_result(dataset: Path, run_one, tmp_path: Path) -> None:
    out, _ = run_one
    summary = preprocess(compose_cfg(dataset, tmp_path / "w2", "workers=2"))
    assert summary["workers"] == 2 and summary["done"] == 8
    assert (tmp_path / "w2" / MANIFEST).read_text() == (out / MANIFEST).read_text()
    assert read_failures(tmp_path / "w2") == read_failures(out)
    for entry in read_manifest(out):
        np.testing.assert_array_equal(
            read_image(tmp_path / "w2" / entry.crop), read_image(entry.crop_path(out))
        )


def test_a_folder_made_with_other_settings_is_not_resumed(dataset: Path, run_one) -> None:
    out, _ = run_one
    with pytest.raises(DeidError, match="crop"):
        preprocess(compose_cfg(dataset, out, "crop.scale=4.0"))


def test_read_manifest_names_the_command_when_missing(tmp_path: Path) -> None:
    with pytest.raises(DeidError, match="python -m deid.prep.faces"):
        read_manifest(tmp_path)


def test_crop_stems_keep_ids_that_differ_only_in_suffix_apart() -> None:
    stems = crop_stems(["a/x.jpg", "a/x.png", "b/y.jpg"])
    assert stems == {"a/x.jpg": "a/x_jpg", "a/x.png": "a/x_png", "b/y.jpg": "b/y"}


def test_manifest_csv_is_plain_csv(run_one) -> None:
    out, _ = run_one
    with open(out / MANIFEST, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and rows[0]["landmarks"].startswith("[[")


def test_command_line_fails_in_one_line_on_a_missing_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deid.prep.faces",
            "data=image_folder",
            f"data.root={tmp_path / 'nowhere'}",
            f"out={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith("error:") and "nowhere" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_large_photos_are_searched_shrunk_and_cropped_at_full_size(dataset: Path, tmp_path):
    name = sorted((dataset / PEOPLE[1]).iterdir())[0]
    photo = read_image(name)
    big = cv2.resize(photo, (photo.shape[1] * 3, photo.shape[0] * 3), cv2.INTER_CUBIC)
    write_image(tmp_path / "big.png", big)
    detector = {"name": "dlib_hog", "upsample": 1}
    small_side = max(photo.shape[:2])
    cropper = FaceCropper(CropSettings(str(tmp_path / "out"), detector, detect_max_side=small_side))
    task = ImageTask(str(tmp_path / "big.png"), "big.png", "x", "all", "big")
    (entry,) = cropper(task).entries
    (face,) = build_detector(**detector).detect(photo)
    np.testing.assert_allclose(entry.box, np.array(face.box) * 3, atol=1e-6)
    assert read_image(entry.crop_path(tmp_path / "out")).shape == (218, 178, 3)


def test_a_second_run_on_the_same_folder_is_refused(dataset: Path, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    with (
        ManifestWriter(busy, FaceEntry),
        pytest.raises(DeidError, match="another preprocessing run"),
    ):
        preprocess(compose_cfg(dataset, busy, "workers=1"))
    assert not (busy / "settings.json").exists()  # refused before touching anything
    with ManifestWriter(tmp_path / "busy", FaceEntry) as writer:  # released when the first closed
        assert writer.rows == 0
