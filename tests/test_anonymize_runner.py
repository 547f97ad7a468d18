"""anonymize.py / `deid anonymize` on images and folders: every face replaced, the rest
bit-identical, layouts kept, bad files skipped and counted, fail-closed fallbacks, strict exit
codes, identity control, the audit, and the secret key kept out of every output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ciagan.anonymizer import CiaganAnonymizer
from ciagan.nets import Generator
from deid.anonymizers.base import NEEDS_FACES, NEEDS_LANDMARKS, Subject
from deid.anonymizers.baselines import blur
from deid.anonymizers.cli import compose_config, parser
from deid.anonymizers.frame import FrameAnonymizer, FrameInput
from deid.anonymizers.inputs import plan_jobs
from deid.anonymizers.runner import IncompleteAnonymizationError, anonymize
from deid.errors import DeidError
from deid.faces import LandmarkPredictor, build_detector
from deid.faces.types import Face
from deid.media import read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
KEY = "5eC7e7" + "ab" * 13  # 16 bytes of hex; must never show up anywhere
TINY_GENERATOR = {
    "channels": [8, 16, 16],
    "up_channels": [16, 8, 8],
    "bottleneck_channels": 16,
    "num_res_blocks": 1,
    "id_hidden": [32, 32],
    "id_channels": [8, 16],
}


class Broken:
    """A method whose generator always fails."""

    needs = frozenset({NEEDS_FACES})

    def __init__(self, **_: object) -> None:
        self.name = "broken"

    def anonymize(self, subjects, seeds=None):
        raise RuntimeError("generator exploded")


def _photo(demo_root: Path, name: str, size: int = 300) -> np.ndarray:
    path = sorted((demo_root / "val" / name).glob("*.jpg"))[0]
    return cv2.resize(read_image(path), (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def group(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Face]]:
    """Three real demo faces side by side with grey gaps, as a PNG; its faces (+ landmarks)."""
    gap = np.full((300, 60, 3), 90, np.uint8)
    tiles = [_photo(demo_root, n) for n in ("madonna", "elton_john", "jerry_seinfeld")]
    image = np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1)
    path = write_image(tmp_path_factory.mktemp("group") / "group.png", image)
    faces = LandmarkPredictor().add_landmarks(image, build_detector("dlib_hog").detect(image))
    assert len(faces) == 3
    return path, faces


def _run(args: list[str], **inject):
    return anonymize(compose_config(parser().parse_args([*args, "--no-progress"])), **inject)


def _far_from_faces(shape: tuple[int, ...], faces: list[Face]) -> np.ndarray:
    """True where a pixel is more than one face size away from every face box."""
    near = np.zeros(shape[:2], bool)
    for face in faces:
        x0, y0, x1, y1 = (int(v) for v in face.box)
        w, h = x1 - x0, y1 - y0
        near[max(0, y0 - h) : y1 + h, max(0, x0 - w) : x1 + w] = True
    return ~near


def _changed_per_face(before: np.ndarray, after: np.ndarray, faces: list[Face]) -> list[float]:
    changed = np.abs(after.astype(int) - before).max(axis=2) > 0
    fractions = []
    for face in faces:
        x0, y0, x1, y1 = (int(v) for v in face.box)
        fractions.append(float(changed[y0:y1, x0:x1].mean()))
    return fractions


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CIAGAN checkpoint in the trained layout (hparams + `generator.` weights)."""
    torch.manual_seed(0)
    generator = Generator(7, image_size=32, **TINY_GENERATOR)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save(
        {
            "state_dict": {f"generator.{k}": v for k, v in generator.state_dict().items()},
            "hyper_parameters": {
                "num_identities": 7,
                "image_size": 32,
                "generator": TINY_GENERATOR,
            },
        },
        path,
    )
    return path


@pytest.mark.parametrize("method", ["blur9", "pixel16", "ciagan"])
def test_every_face_is_anonymized_and_far_pixels_are_bit_identical(
    method: str, group: tuple[Path, list[Face]], tiny_ckpt: Path, tmp_path: Path
) -> None:
    path, faces = group
    out = tmp_path / "out.png"
    extra = ["--ckpt", str(tiny_ckpt)] if method == "ciagan" else []
    summary = _run([str(path), "-o", str(out), "--anonymizer", method, *extra])
    before, after = read_image(path), read_image(out)
    assert after.shape == before.shape and out.suffix == ".png"
    assert min(_changed_per_face(before, after, faces)) > 0.5, "a face was not replaced"
    far = _far_from_faces(before.shape, faces)
    assert np.array_equal(after[far], before[far]), "pixels far from every face changed"
    counts = summary["counts"]
    assert (counts["faces_found"], counts["anonymized"], counts["fallbacks"]) == (3, 3, 0)
    assert (tmp_path / "out.anonymize_summary.json").is_file()
    if method == "ciagan":  # identity control: one keyed identity per face, within the model's 7
        identities = summary["files"][0]["identities"]
        assert sorted(identities) == ["0", "1", "2"] and all(
            0 <= v < 7 for v in identities.values()
        )


def test_caller_identities_drive_ciagan_and_a_fixed_identity_wins(
    group: tuple[Path, list[Face]], tiny_ckpt: Path
) -> None:
    path, faces = group
    image = read_image(path)
    model = CiaganAnonymizer.from_checkpoint(tiny_ckpt, device="cpu")
    given = model.anonymize([Subject(image, faces, identities=[3, 3, 3])], seeds=[0])[0]
    other = model.anonymize([Subject(image, faces, identities=[5, 5, 5])], seeds=[0])[0]
    fixed = CiaganAnonymizer.from_checkpoint(tiny_ckpt, device="cpu", identity=3)
    assert np.array_equal(fixed.anonymize([Subject(image, faces)], seeds=[9])[0], given)
    assert not np.array_equal(given, other)
    overridden = fixed.anonymize([Subject(image, faces, identities=[5, 5, 5])], seeds=[0])[0]
    assert np.array_equal(overridden, given)  # the method's own fixed identity wins


def test_a_folder_tree_keeps_its_layout_and_bad_files_are_skipped_and_counted(
    demo_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    write_image(src / "a.jpg", _photo(demo_root, "madonna"))
    write_image(src / "sub" / "b.png", _photo(demo_root, "elton_john"))
    write_image(src / "sub" / "deeper" / "c.JPG", _photo(demo_root, "mindy_kaling"))
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (src / "empty.png").write_bytes(b"")
    (src / "notes.txt").write_text("not media")
    out = tmp_path / "out"
    summary = _run([str(src), "-o", str(out), "--anonymizer", "blur9"])
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.jpg", "anonymize_summary.json", "sub/b.png", "sub/deeper/c.JPG"]
    for rel in ("a.jpg", "sub/b.png", "sub/deeper/c.JPG"):
        assert read_image(out / rel).shape == (300, 300, 3)
        assert not np.array_equal(read_image(out / rel), read_image(src / rel))
    counts = summary["counts"]
    assert (counts["files"], counts["images"], counts["failures"]) == (5, 3, 2)
    assert counts["faces_found"] == counts["anonymized"] == 3
    reasons = {Path(f["file"]).name: f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"broken.jpg", "empty.png"}
    assert "empty" in reasons["empty.png"] and "corrupt" in reasons["broken.jpg"]
    on_disk = json.loads((out / "anonymize_summary.json").read_text())
    assert on_disk["counts"] == counts


def test_outputs_never_overwrite_inputs(group: tuple[Path, list[Face]], tmp_path: Path) -> None:
    path, _ = group
    with pytest.raises(DeidError, match="input"):
        plan_jobs([path], path)
    with pytest.raises(DeidError, match="inside"):
        plan_jobs([path.parent], path.parent / "anonymized")
    with pytest.raises(DeidError, match="no such file"):
        plan_jobs([tmp_path / "missing.jpg"], tmp_path / "out")
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    write_image(tmp_path / "x" / "p.png", np.zeros((4, 4, 3), np.uint8))
    write_image(tmp_path / "y" / "p.png", np.zeros((4, 4, 3), np.uint8))
    plan = plan_jobs([tmp_path / "x", tmp_path / "y"], tmp_path / "out")
    assert [j.rel for j in plan.jobs] == ["x/p.png", "y/p.png"]  # several folders: cp -r layout


def test_faces_the_method_cannot_take_fall_back_face_by_face(
    group: tuple[Path, list[Face]], tiny_ckpt: Path
) -> None:
    path, faces = group
    image = read_image(path)
    # landmarks: missing, degenerate (inner eye corners coincide), fine
    squashed = faces[1].landmarks.copy()
    squashed[42] = squashed[39]
    bad = [faces[0].with_landmarks(None), faces[1].with_landmarks(squashed), faces[2]]
    ciagan = CiaganAnonymizer.from_checkpoint(tiny_ckpt, device="cpu")
    result = FrameAnonymizer(ciagan, "blackbox")(image, bad, [1, 2, 3])
    assert result.anonymized == 1 and result.fallback_faces == [0, 1]
    assert "no landmarks" in result.fallbacks[0] and "coincide" in result.fallbacks[1]
    for face in faces[:2]:
        x0, y0, x1, y1 = (int(v) for v in face.box)
        assert result.image[y0:y1, x0:x1].max() == 0  # black box
    assert min(_changed_per_face(image, result.image, faces)) > 0.5

    class FailsOnMiddleFace:  # raises only when the middle face is in the batch
        name, needs = "picky", frozenset({NEEDS_FACES, NEEDS_LANDMARKS})

        def anonymize(self, subjects, seeds=None):
            if any(f is faces[1] for s in subjects for f in s.faces):
                raise ValueError("cannot")
            return blur(9).anonymize(subjects)

    result = FrameAnonymizer(FailsOnMiddleFace())(image, faces)
    assert result.anonymized == 2 and result.fallback_faces == [1]
    assert min(_changed_per_face(image, result.image, faces)) > 0.5


def test_frames_in_one_call_equal_frames_one_by_one(
    group: tuple[Path, list[Face]], tiny_ckpt: Path
) -> None:
    """`many` (how video frames go, in pairs): one method call for all frames, the same
    images and records as frame by frame; a call that fails sends every frame alone, where a
    face the method cannot take still costs only itself."""
    path, faces = group
    image = read_image(path)
    shifted = np.roll(image, 7, axis=1)  # a second, different frame
    ciagan = CiaganAnonymizer.from_checkpoint(tiny_ckpt, device="cpu", precision="fp32")
    frames = FrameAnonymizer(ciagan, "blackbox")
    inputs = [
        FrameInput.of(image, faces, [1, 2, 3], seed=5),
        FrameInput.of(shifted, [faces[0].with_landmarks(None)], [4], seed=6),  # falls back
        FrameInput.of(image, [], [], seed=7),  # nothing to do
    ]
    calls: list[int] = []
    real = ciagan.anonymize

    def counting(subjects, seeds=None):
        calls.append(len(subjects))
        return real(subjects, seeds)

    ciagan.anonymize = counting
    together = frames.many(inputs)
    assert calls == [1]  # one call; the other frames had nothing the method could take
    calls.clear()
    alone = [frames(i.image, i.faces, i.identities, seed=i.seed) for i in inputs]
    assert calls == [1]
    for a, b in zip(together, alone, strict=True):
        assert np.abs(a.image.astype(int) - b.image).max() <= 1  # float rounding only
        assert (a.anonymized, a.fallbacks, a.regions) == (b.anonymized, b.fallbacks, b.regions)
    assert together[1].anonymized == 0 and together[1].fallback_faces == [0]
    calls.clear()
    pair = [inputs[0], FrameInput.of(shifted, faces, [1, 2, 3], seed=8)]
    assert [r.anonymized for r in frames.many(pair)] == [3, 3] and calls == [2]

    class FailsOnMiddleFace:  # raises whenever the middle face is in the call
        name, needs = "picky", frozenset({NEEDS_FACES, NEEDS_LANDMARKS})

        def anonymize(self, subjects, seeds=None):
            if any(f is faces[1] for s in subjects for f in s.faces):
                raise ValueError("cannot")
            return blur(9).anonymize(subjects)

    picky = FrameAnonymizer(FailsOnMiddleFace())
    results = picky.many([FrameInput.of(image, faces), FrameInput.of(shifted, faces[:1])])
    assert [r.anonymized for r in results] == [2, 1]
    assert results[0].fallback_faces == [1] and results[1].fallbacks == []
    assert min(_changed_per_face(image, results[0].image, faces)) > 0.5


def test_a_broken_generator_falls_back_everywhere_and_strict_fails(
    group: tuple[Path, list[Face]], tmp_path: Path
) -> None:
    path, faces = group
    summary = _run([str(path), "-o", str(tmp_path / "a")], anonymizer=Broken())
    assert summary["counts"]["fallbacks"] == 3 and summary["counts"]["anonymized"] == 0
    assert list(summary["fallback_reasons"]) == ["broken failed: RuntimeError: generator exploded"]
    before, after = read_image(path), read_image(tmp_path / "a" / "group.png")
    assert min(_changed_per_face(before, after, faces)) > 0.5
    far = _far_from_faces(before.shape, faces)
    assert np.array_equal(after[far], before[far])
    with pytest.raises(IncompleteAnonymizationError, match="3 faces fell back") as err:
        _run([str(path), "-o", str(tmp_path / "b"), "--strict"], anonymizer=Broken())
    assert err.value.exit_code == 3
    assert (tmp_path / "b" / "group.png").is_file()  # finished what it could first

    # The command line: exit code 3, one error line, no traceback, the key nowhere.
    (tmp_path / "broken_method.py").write_text(
        "class Broken:\n"
        "    needs = frozenset({'faces'})\n"
        "    def __init__(self, **_):\n"
        "        self.name = 'broken'\n"
        "    def anonymize(self, subjects, seeds=None):\n"
        "        raise RuntimeError('generator exploded')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "deid.cli", "anonymize", str(path), "-o", str(out)]
    command += ["--strict", "--key", KEY, "--set", "model._target_=broken_method.Broken"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: strict: 3 faces fell back")
    summary_text = (out / "anonymize_summary.json").read_text()
    for text in (proc.stdout, proc.stderr, summary_text):
        assert KEY.lower() not in text.lower()
    assert json.loads(summary_text)["counts"]["fallbacks"] == 3


def test_audit_flags_the_original_and_passes_pixel16(
    group: tuple[Path, list[Face]], tmp_path: Path
) -> None:
    path, _ = group
    original = _run([str(path), "-o", str(tmp_path / "o"), "--anonymizer", "original", "--audit"])
    (record,) = original["files"]
    audit = record["audit"]
    assert original["audit_detector"] == "dlib_hog"  # independent of mediapipe+mtcnn
    assert audit["found"] == 3 and audit["covered"] == 3 and audit["missed"] == 0
    assert audit["still_matching"] == 3
    assert all(f["distance"] < 0.1 for f in audit["matching_faces"])
    assert original["audit_flagged_files"] == [str(path)]
    pixel = _run([str(path), "-o", str(tmp_path / "p"), "--anonymizer", "pixel16", "--audit"])
    assert pixel["counts"]["audit_found"] == 3 and pixel["counts"]["audit_covered"] == 3
    assert pixel["counts"]["audit_still_matching"] == 0 and pixel["audit_flagged_files"] == []


def test_the_hydra_entry_point_runs_and_never_writes_the_key(
    group: tuple[Path, list[Face]], tmp_path: Path
) -> None:
    path, _ = group
    run_dir, out = tmp_path / "run", tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "anonymize.py", f"in={path}", f"out={out}", "model=blur9"]
        + [f"key={KEY}", "camera=lobby", "progress=false", f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "faces: 3 found" in proc.stdout
    texts = [proc.stdout, proc.stderr]
    texts += [
        p.read_text(errors="replace")
        for p in [*run_dir.rglob("*"), *out.rglob("*")]
        if p.is_file() and p.suffix != ".png"
    ]
    assert texts and not any(KEY.lower() in t.lower() for t in texts)
    summary = json.loads((out / "anonymize_summary.json").read_text())
    assert summary["config"]["key"] == "<secret: not recorded>"
