"""Batches that survive faults: unwritable outputs fail before any work, a SIGKILLed batch
leaves a summary of what finished, and a re-run finishes it without redoing complete files
and without leftover temp files. Videos come out as H.264 with frames, fps and audio kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deid.anonymizers.cli import compose_config, parser
from deid.anonymizers.runner import anonymize
from deid.errors import DeidError
from deid.media import VideoReader, find_ffmpeg, probe_streams, read_image, write_image
from demo.scenes import group_photo, moving_faces_frames

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> dict:
    return anonymize(compose_config(parser().parse_args([*args, "--no-progress"])))


def _h264_with_audio(frames: list[np.ndarray], path: Path, fps: float = 12.0) -> Path:
    """An H.264 mp4 of `frames` with a 440 Hz AAC track, as a phone would record it."""
    ffmpeg = find_ffmpeg()
    assert ffmpeg is not None
    height, width = frames[0].shape[:2]
    seconds = len(frames) / fps
    command = [ffmpeg, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    command += ["-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
    command += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    command += ["-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for frame in frames:
        proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    assert proc.wait() == 0
    return path


@pytest.fixture(scope="module")
def clip(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    return _h264_with_audio(moving_faces_frames(demo_root, frames=24), folder / "faces.mp4")


def test_output_under_a_regular_file_fails_before_any_work(demo_root: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "group.png", group_photo(demo_root, height=200))
    blocker = tmp_path / "some_file"
    blocker.write_text("not a folder")
    with pytest.raises(DeidError, match="some_file is a file") as err:
        _run([str(tmp_path / "in"), "-o", str(blocker / "out")])
    assert err.value.exit_code == 2
    assert blocker.read_text() == "not a folder"


def test_h264_in_h264_out_with_frames_fps_audio_and_untouched_pixels(
    clip: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    summary = _run([str(clip), "-o", str(out), "--anonymizer", "original"])
    streams = probe_streams(out)
    assert any(s.startswith("Video: h264") for s in streams), streams
    assert any(s.startswith("Audio:") for s in streams), streams
    with VideoReader(clip) as src, VideoReader(out) as dst:
        assert dst.fps == pytest.approx(src.fps) and dst.size == src.size
        pairs = list(zip(src, dst, strict=True))
    assert len(pairs) == 24 == summary["counts"]["frames"]
    error = np.mean([np.abs(a.astype(int) - b).mean() for a, b in pairs])
    assert error < 2.0  # the pass-through re-encode stays within ~2 grey levels
    assert out.stat().st_size < 1.5 * clip.stat().st_size


def _hidden_temps(folder: Path, prefix: str = ".") -> list[Path]:
    return [p for p in folder.rglob(f"{prefix}*") if ".tmp" in p.name]


def test_a_killed_batch_resumes_skips_finished_files_and_cleans_temps(
    demo_root: Path, clip: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    for index, name in enumerate(("ben_afflek", "madonna")):
        photo = sorted((demo_root / "val" / name).glob("*.jpg"))[0]
        write_image(inputs / f"a{index}.png", read_image(photo))
    (inputs / "z.mp4").write_bytes(clip.read_bytes())
    out = tmp_path / "out"
    command = [sys.executable, "-m", "deid.cli", "anonymize", str(inputs), "-o", str(out)]
    command += ["--no-progress", "--workers", "1"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not _hidden_temps(out, ".z.mp4.") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the video's temp output appears once its frames are being written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _hidden_temps(out, ".z.mp4."), "the batch finished before it could be killed"
    killed = json.loads((out / "anonymize_summary.json").read_text())
    assert killed["finished"] is False
    assert [Path(f["input"]).name for f in killed["files"]] == ["a0.png", "a1.png"]
    stamps = {name: (out / name).stat().st_mtime_ns for name in ("a0.png", "a1.png")}

    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads((out / "anonymize_summary.json").read_text())
    assert summary["finished"] is True and summary["counts"]["reused"] == 2
    assert {Path(f["input"]).name: f.get("reused", False) for f in summary["files"]} == {
        "a0.png": True,
        "a1.png": True,
        "z.mp4": False,
    }
    assert {name: (out / name).stat().st_mtime_ns for name in stamps} == stamps
    assert (out / "z.mp4").is_file() and not _hidden_temps(out)

    redo = _run([str(inputs), "-o", str(out), "--overwrite"])
    assert redo["counts"]["reused"] == 0 and redo["counts"]["files"] == 3


def test_changed_settings_redo_the_outputs(demo_root: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "g.png", group_photo(demo_root, height=200))
    first = _run([str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    same = _run([str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    other = _run([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--anonymizer", "pixel8"])
    assert first["counts"]["reused"] == 0 and same["counts"]["reused"] == 1
    assert other["counts"]["reused"] == 0


def test_stale_temp_files_of_a_killed_run_are_removed(demo_root: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "g.png", group_photo(demo_root, height=200))
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".g.png.abc123.tmp.png", out / ".anonymize_summary.json.x1.tmp.json"]
    for path in stale:
        path.write_bytes(b"half written")
    unrelated = out / ".notes.txt"
    unrelated.write_text("mine")
    _run([str(tmp_path / "in"), "-o", str(out)])
    assert not any(p.exists() for p in stale) and unrelated.is_file()


def test_the_key_comes_from_an_environment_variable(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deid.anonymizers.identity_keys import key_fingerprint, load_secret_key

    monkeypatch.setenv("MY_DEID_KEY", "ab" * 16)
    assert load_secret_key("env:MY_DEID_KEY") == bytes.fromhex("ab" * 16)
    with pytest.raises(DeidError, match="NOT_SET is not set"):
        load_secret_key("env:NOT_SET")
    monkeypatch.setenv("DEID_KEY", "cd" * 16)
    assert key_fingerprint(load_secret_key(os.environ["DEID_KEY"])) != key_fingerprint(
        load_secret_key("env:MY_DEID_KEY")
    )
