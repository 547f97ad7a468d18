"""Detectors built from detectors: tiles find small faces, a downscale maps boxes back, unions
keep every face, frame skipping looks at every k-th frame, and tracks bridge what was skipped."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deid.anonymizers.tracking import iou, track_video
from deid.faces import build_detector
from deid.faces.detectors import build_detector_spec
from deid.faces.detectors.base import FaceDetector
from deid.faces.detectors.compose import (
    FrameSkipDetector,
    ScaledDetector,
    TiledDetector,
    UnionDetector,
    merge_enclosing,
    tile_grid,
)
from deid.faces.types import Face


class Fixed(FaceDetector):
    """Reports the same faces for every image (and counts its calls)."""

    def __init__(self, name: str, boxes: list[tuple[float, ...]]) -> None:
        self.name, self.boxes, self.calls = name, boxes, 0

    def detect(self, image: np.ndarray) -> list[Face]:
        self.calls += 1
        return [Face(box, 0.9) for box in self.boxes]


def test_tiles_cover_the_image_with_overlap() -> None:
    grid = tile_grid(640, 480, 384, 0.25)
    assert len(grid) == 4
    covered = np.zeros((480, 640), bool)
    for x0, y0, x1, y1 in grid:
        assert x1 - x0 <= 384 and y1 - y0 <= 384
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert tile_grid(300, 200, 384, 0.25) == []


def test_tiles_find_a_face_too_small_for_the_whole_image(astronaut: np.ndarray) -> None:
    """The astronaut shrunk to a 30 px face in a 1280x960 frame: MediaPipe's full-range model
    misses it on the whole frame and finds it on tiles, at the right place."""
    frame = np.full((960, 1280, 3), 120, np.uint8)
    small = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    frame[600:760, 900:1060] = small
    whole = build_detector("mediapipe", model_selection=1)
    tiled = TiledDetector(build_detector("mediapipe", model_selection=1), tile=384)
    assert whole.detect(frame) == []
    (face,) = tiled.detect(frame)
    x0, y0, x1, y1 = face.box
    assert 900 < x0 < x1 < 1060 and 600 < y0 < y1 < 760


def test_merging_keeps_the_enclosing_box() -> None:
    part = Face((10, 10, 30, 40), 0.95)  # a face cut by a tile border
    whole = Face((5, 8, 50, 60), 0.8)
    other = Face((200, 200, 240, 250), 0.7)
    merged = merge_enclosing([part, whole, other])
    assert sorted(f.box for f in merged) == [(5.0, 8.0, 50.0, 60.0), other.box]
    assert max(f.score for f in merged) == 0.95


def test_scaled_detection_maps_boxes_back(astronaut: np.ndarray) -> None:
    full = build_detector("mtcnn").detect(astronaut)[0]
    half = ScaledDetector(build_detector("mtcnn"), 0.5).detect(astronaut)[0]
    assert iou(full.box, half.box) > 0.8
    assert np.abs(full.landmarks - half.landmarks).max() < 6


def test_union_keeps_every_face_and_runs_members_on_their_frames() -> None:
    first = Fixed("a", [(0, 0, 10, 10)])
    second = Fixed("b", [(1, 1, 10, 10), (50, 50, 60, 60)])  # the first duplicates a's face
    union = UnionDetector([first, second], every=[1, 3])
    image = np.zeros((80, 80, 3), np.uint8)
    found = [union.detect_frame(image, i) for i in range(6)]
    assert [len(f) for f in found] == [2, 1, 1, 2, 1, 1]
    assert found[0][0].box == (0, 0, 10, 10)  # the earlier member's box wins
    assert (first.calls, second.calls, union.frame_step) == (6, 2, 3)


def test_frame_skipping_and_track_extension_cover_every_frame() -> None:
    """A face seen only on every 3rd frame (frames 0..8 of 10, appearing at 1): the tracker
    fills the frames between and holds the track 2 frames past its ends."""
    skip = FrameSkipDetector(Fixed("a", [(10, 10, 40, 40)]), 3)
    image = np.zeros((64, 64, 3), np.uint8)
    detections = [skip.detect_frame(image, i) if 1 <= i <= 8 else [] for i in range(10)]
    assert [len(d) for d in detections] == [0, 0, 0, 1, 0, 0, 1, 0, 0, 0]
    tracked = track_video(detections, extend=skip.frame_step - 1)
    assert [len(t) for t in tracked] == [0, 1, 1, 1, 1, 1, 1, 1, 1, 0]


@pytest.mark.parametrize("spec", [{"members": [{"name": "dlib_hog"}], "name": "bogus"}, {}])
def test_bad_specs_fail_in_one_line(spec: dict) -> None:
    from deid.errors import DeidError

    with pytest.raises(DeidError):
        build_detector_spec(spec)
