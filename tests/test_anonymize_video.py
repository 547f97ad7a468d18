"""Videos: frame count and fps kept, a face the detector misses for a frame is still anonymized
(gap filling over the track), and one person keeps one fake identity per camera."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from deid.anonymizers.baselines import blackbox
from deid.anonymizers.cli import compose_config, parser
from deid.anonymizers.runner import anonymize
from deid.faces import FaceDetector, build_detector
from deid.media import VideoReader, VideoWriter, read_image

FRAMES, FPS, DROP_FRAME = 20, 10.0, 9
KEY = "0123456789abcdef" * 2


def _photo(demo_root: Path, name: str) -> np.ndarray:
    return read_image(sorted((demo_root / "val" / name).glob("*.jpg"))[0])


@pytest.fixture(scope="module")
def video(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 frames, 640x480: two real demo photos sliding towards each other and growing."""
    photos = [_photo(demo_root, "madonna"), _photo(demo_root, "jerry_seinfeld")]
    path = tmp_path_factory.mktemp("video") / "two_people.mp4"
    with VideoWriter(path, FPS, (640, 480)) as writer:
        for t in range(FRAMES):
            frame = np.full((480, 640, 3), 70, np.uint8)
            size = 230 + 2 * t
            for k, photo in enumerate(photos):
                tile = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
                x = 20 + 3 * t if k == 0 else 640 - 20 - size - 3 * t
                y = 120 + (t if k == 0 else -t)
                frame[y : y + size, x : x + size] = tile
            writer.write(frame)
    return path


class DropsOneDetection(FaceDetector):
    """The real detector, except that it misses the leftmost face in frame `drop`."""

    name = "drops_one"

    def __init__(self, drop: int) -> None:
        self.inner = build_detector("dlib_hog", upsample=1)
        self.drop = drop

    def detect(self, image):
        return self.inner.detect(image)

    def detect_frame(self, image, index):
        faces = self.inner.detect(image)
        if index == self.drop and faces:
            faces = [f for f in faces if f is not min(faces, key=lambda f: f.center[0])]
        return faces


class Recording:
    """Black box with identity control; records the faces and identities of every call."""

    name, num_identities = "recording", 1000

    def __init__(self) -> None:
        self.inner = blackbox()
        self.needs = self.inner.needs
        self.calls: list[tuple[list, list[int] | None]] = []

    def anonymize(self, subjects, seeds=None):
        self.calls += [(s.faces, s.identities) for s in subjects]
        return self.inner.anonymize(subjects, seeds)


def _run(video: Path, out: Path, camera: str, method, detector) -> dict:
    args = [str(video), "-o", str(out), "--key", KEY, "--camera", camera, "--no-progress"]
    return anonymize(
        compose_config(parser().parse_args(args)), anonymizer=method, detector=detector
    )


def test_video_keeps_frames_fills_gaps_and_keeps_identities(video: Path, tmp_path: Path) -> None:
    method, detector = Recording(), DropsOneDetection(DROP_FRAME)
    out = tmp_path / "a" / "anon.mp4"
    summary = _run(video, out, "lobby", method, detector)

    with VideoReader(video) as src, VideoReader(out) as dst:
        assert dst.fps == pytest.approx(src.fps) and dst.size == src.size
        source, written = list(src), list(dst)
    assert len(written) == len(source) == FRAMES
    counts = summary["counts"]
    assert (counts["videos"], counts["frames"], counts["fallbacks"]) == (1, FRAMES, 0)
    assert counts["faces_found"] == 2 * FRAMES - 1 and counts["faces_interpolated"] == 1
    assert counts["anonymized"] == 2 * FRAMES

    # the face the detector missed in DROP_FRAME is still there, interpolated, and blacked out
    assert len(method.calls) == FRAMES and all(len(f) == 2 for f, _ in method.calls)
    for faces, _ in method.calls[DROP_FRAME - 1 : DROP_FRAME + 2]:
        for face in faces:
            x0, y0, x1, y1 = (int(v) for v in face.box)
            k = DROP_FRAME
            assert written[k][y0:y1, x0:x1].mean() < 25 < source[k][y0:y1, x0:x1].mean()

    # one person, one fake identity through the whole video; two people, two identities
    by_side = {"left": set(), "right": set()}
    for faces, ids in method.calls:
        left = int(np.argmin([f.center[0] for f in faces]))
        by_side["left"].add(ids[left])
        by_side["right"].add(ids[1 - left])
    assert len(by_side["left"]) == len(by_side["right"]) == 1
    assert by_side["left"] != by_side["right"]
    identities = summary["files"][0]["identities"]
    assert sorted(identities.values()) == sorted(by_side["left"] | by_side["right"])

    # another camera, the same key: the same people get other fake identities
    other = _run(video, tmp_path / "b" / "anon.mp4", "garage", Recording(), DropsOneDetection(-1))
    assert other["files"][0]["identities"].keys() == identities.keys()
    assert other["files"][0]["identities"] != identities
    assert other["counts"]["faces_interpolated"] == 0  # no missed detection this time


def test_worker_threads_keep_their_models_and_match_one_thread(
    video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two worker threads, two videos, two passes each: two detectors are built in all (the
    first worker takes over the main thread's), and the frames equal a one-thread run's."""
    import deid.anonymizers.runner as runner

    built: list[str] = []
    real = runner.build_detector

    def counting(*args, **kwargs):
        built.append("detector")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "build_detector", counting)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(video.read_bytes())
    outputs = {}
    for workers in (2, 1):
        built.clear()
        out = tmp_path / f"w{workers}"
        args = [str(folder), "-o", str(out), "--detector", "mediapipe", "--no-progress"]
        summary = anonymize(compose_config(parser().parse_args([*args, "--workers", str(workers)])))
        assert summary["counts"]["faces_found"] == 2 * 2 * FRAMES
        assert len(built) == workers
        with VideoReader(out / "b.mp4") as reader:
            outputs[workers] = np.stack(list(reader))
    assert np.array_equal(outputs[2], outputs[1])
