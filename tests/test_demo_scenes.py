"""The demo's synthetic inputs: a group photo with one face per person, and a video whose faces
move and shrink so the detector misses a few frames that gap filling covers."""

from __future__ import annotations

from pathlib import Path

from deid.anonymizers.tracking import track_video
from deid.faces import build_detector
from deid.media import VideoReader
from demo.scenes import GROUP, group_photo, write_moving_faces_video


def test_group_photo_has_one_face_per_person(demo_root: Path) -> None:
    image = group_photo(demo_root)
    assert len(build_detector("dlib_hog").detect(image)) == len(GROUP)


def test_moving_faces_video_has_short_detector_gaps(demo_root: Path, tmp_path: Path) -> None:
    path = write_moving_faces_video(demo_root, tmp_path / "clip.mp4", frames=48)
    detector = build_detector("dlib_hog")
    with VideoReader(path) as reader:
        assert reader.fps == 12.0
        detections = [detector.detect(frame) for frame in reader]
    assert len(detections) == 48
    counts = [len(d) for d in detections]
    assert min(counts) < len(GROUP) <= max(counts)  # the detector misses a face sometimes
    tracked = track_video(detections)
    assert max(f.track_id for frame in tracked for f in frame) == len(GROUP) - 1  # no new tracks
    assert all(len(frame) == len(GROUP) for frame in tracked)  # every miss is gap-filled
