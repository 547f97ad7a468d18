"""Face tracker, temporal smoothing and gap filling on synthetic face trajectories."""

from __future__ import annotations

import numpy as np
import pytest

from deid.anonymizers.tracking import (
    FaceTracker,
    TrackedFace,
    iou,
    smooth_and_fill,
    track_video,
)
from deid.faces.types import Face

# A 68-point landmark template in a unit box, the shape of a face (a ring of points).
_ANGLES = np.linspace(0, 2 * np.pi, 68, endpoint=False)
_TEMPLATE = np.stack([0.5 + 0.4 * np.cos(_ANGLES), 0.5 + 0.4 * np.sin(_ANGLES)], 1)


def face(x: float, y: float, size: float = 60.0, landmarks: bool = True) -> Face:
    """A face whose box has its top-left corner at (x, y) and 68 landmarks inside."""
    return Face(
        box=(x, y, x + size, y + size),
        score=0.9,
        landmarks=_TEMPLATE * size + [x, y] if landmarks else None,
    )


def run(tracker: FaceTracker, frames: list[list[Face]]) -> list[list[int]]:
    return [tracker.update(i, faces) for i, faces in enumerate(frames)]


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0


def test_two_moving_faces_keep_their_ids() -> None:
    frames = [[face(10 + 8 * t, 50), face(300 - 5 * t, 200)] for t in range(20)]
    ids = run(FaceTracker(), frames)
    assert all(frame == [0, 1] for frame in ids)
    # detection order does not matter: after the first frame, swapped lists swap the ids
    swapped = frames[:1] + [list(reversed(f)) for f in frames[1:]]
    assert all(frame == [1, 0] for frame in run(FaceTracker(), swapped)[1:])


def test_short_absence_keeps_the_id_long_absence_gets_a_new_one() -> None:
    frames = [[face(100 + 3 * t, 100)] for t in range(20)]
    for t in (5, 6):  # 2 frames missing: within max_gap
        frames[t] = []
    for t in range(10, 17):  # 7 frames missing: more than max_gap=5
        frames[t] = []
    ids = run(FaceTracker(max_gap=5), frames)
    assert [i for frame in ids[:10] for i in frame] == [0] * 8
    assert [i for frame in ids[17:] for i in frame] == [1] * 3
    # exactly max_gap missing frames still continues the track
    frames = [[face(100, 100)], [], [], [face(100, 100)]]
    assert run(FaceTracker(max_gap=2), frames) == [[0], [], [], [0]]
    assert run(FaceTracker(max_gap=1), frames) == [[0], [], [], [1]]


def test_new_face_gets_new_id_and_ids_are_consecutive() -> None:
    frames = [[face(10, 10)] for _ in range(3)]
    frames += [[face(10, 10), face(200, 10), face(400, 10)] for _ in range(3)]
    ids = run(FaceTracker(), frames)
    assert ids[:3] == [[0]] * 3
    assert ids[3:] == [[0, 1, 2]] * 3


def test_crossing_faces_keep_their_ids() -> None:
    # A moves right, B moves left, 12 px apart vertically: they overlap heavily mid-way.
    frames = [[face(0 + 12 * t, 100), face(240 - 12 * t, 112)] for t in range(21)]
    ids = run(FaceTracker(), frames)
    assert all(frame == [0, 1] for frame in ids)


def test_fast_face_is_followed_by_velocity_prediction() -> None:
    # moves 25 px, then 45 px per frame (60 px face): IoU with the last box drops to 0.14,
    # but the box moved on at the last velocity still overlaps by 0.5
    frames = [[face(x, 100)] for x in (0, 25, 70, 115, 160, 205)]
    assert run(FaceTracker(center_distance=None), frames) == [[0]] * 6
    assert iou(frames[1][0].box, frames[2][0].box) < 0.3


def test_centre_distance_fallback_for_jumps_without_overlap() -> None:
    # 55 px per frame: IoU 0.04 on the first step, caught by centre distance (0.92 face sizes)
    frames = [[face(55 * t, 100)] for t in range(6)]
    assert run(FaceTracker(), frames) == [[0]] * 6
    assert run(FaceTracker(center_distance=None), frames[:2]) == [[0], [1]]
    # 70 px per frame: no overlap at all; followed when the fallback allows 1.5 face sizes
    frames = [[face(70 * t, 100)] for t in range(6)]
    assert iou(frames[0][0].box, frames[1][0].box) == 0.0
    assert run(FaceTracker(center_distance=1.5), frames) == [[0]] * 6
    # a far jump (5 face sizes), or a face twice as large, is not the same face
    assert run(FaceTracker(), [[face(0, 100)], [face(300, 100)]]) == [[0], [1]]
    assert run(FaceTracker(), [[face(0, 100)], [face(0, 100, size=150)]]) == [[0], [1]]


def test_tracker_is_deterministic_and_checks_frame_order() -> None:
    rng = np.random.default_rng(0)
    frames = [[face(*rng.uniform(0, 400, 2)) for _ in range(rng.integers(0, 5))] for _ in range(30)]
    assert run(FaceTracker(), frames) == run(FaceTracker(), frames)
    tracker = FaceTracker()
    tracker.update(3, [])
    with pytest.raises(ValueError, match="increasing"):
        tracker.update(3, [])


def _landmark_error(tracked: list[list[TrackedFace]], truth: list[Face]) -> float:
    return float(
        np.mean(
            [
                np.abs(f[0].face.landmarks - t.landmarks).mean()
                for f, t in zip(tracked, truth, strict=True)
            ]
        )
    )


def test_smoothing_reduces_landmark_noise_of_a_moving_face() -> None:
    rng = np.random.default_rng(1)
    truth = [face(50 + 4 * t, 80 + 2 * t) for t in range(60)]
    noisy = [[f.with_landmarks(f.landmarks + rng.normal(0, 2.0, (68, 2)))] for f in truth]
    ids = [[0]] * len(noisy)
    raw = smooth_and_fill(noisy, ids, window=1)
    smoothed = smooth_and_fill(noisy, ids, window=9, polyorder=2)
    before, after = _landmark_error(raw, truth), _landmark_error(smoothed, truth)
    assert before == pytest.approx(2.0 * np.sqrt(2 / np.pi), rel=0.05)  # nothing changed
    assert after < before / 1.7  # 1.59 -> 0.81 px
    # a noiseless linear trajectory is kept exactly, ends included (polyorder >= 1)
    exact = smooth_and_fill([[f] for f in truth], ids, window=9)
    assert _landmark_error(exact, truth) < 1e-9


def test_static_face_stays_put_and_boxes_only_without_landmarks() -> None:
    rng = np.random.default_rng(2)
    frames = [[face(100, 100, landmarks=False)] for _ in range(15)]
    out = smooth_and_fill(frames, [[0]] * 15)
    for f in out:
        assert f[0].face.landmarks is None
        np.testing.assert_allclose(f[0].face.box, (100, 100, 160, 160), atol=1e-9)
    jitter = [[Face(box=np.array(f[0].box) + rng.normal(0, 1, 4), score=0.9)] for f in frames]
    out = smooth_and_fill(jitter, [[0]] * 15, window=7)
    err_before = np.mean([np.abs(np.array(f[0].box) - 100 - [0, 0, 60, 60]) for f in jitter])
    err_after = np.mean([np.abs(np.array(f[0].face.box) - 100 - [0, 0, 60, 60]) for f in out])
    assert err_after < err_before / 1.5


def test_short_tracks_pass_through_unchanged() -> None:
    rng = np.random.default_rng(3)
    a = face(10, 10)
    a = a.with_landmarks(a.landmarks + rng.normal(0, 3, (68, 2)))
    b = face(17, 13)
    b = b.with_landmarks(b.landmarks + rng.normal(0, 3, (68, 2)))
    c = face(300, 300)
    out = smooth_and_fill([[a, c], [b]], [[0, 1], [0]])
    assert [[(t.track_id, t.source_index) for t in f] for f in out] == [[(0, 0), (1, 1)], [(0, 0)]]
    for tracked, original in ((out[0][0], a), (out[1][0], b), (out[0][1], c)):
        assert not tracked.interpolated
        assert tracked.face.box == original.box
        np.testing.assert_array_equal(tracked.face.landmarks, original.landmarks)
        assert tracked.face.score == original.score


def _remove(frames: list[list[Face]], ids: list[list[int]], missing: range) -> None:
    for t in missing:
        frames[t], ids[t] = [], []


@pytest.mark.parametrize("missing", [range(5, 6), range(5, 8)])
def test_gap_filling_interpolates_missing_frames(missing: range) -> None:
    rng = np.random.default_rng(4)
    frames = [[face(100 + 6 * t + rng.normal(0, 3), 100)] for t in range(12)]
    original = [f[0] for f in frames]
    ids = [[0] for _ in frames]
    _remove(frames, ids, missing)
    out = smooth_and_fill(frames, ids, window=1)  # no smoothing: exact interpolation
    assert len(out) == len(frames)
    before, after = original[missing.start - 1], original[missing.stop]
    for t in range(12):
        assert len(out[t]) == 1
        tracked = out[t][0]
        assert tracked.track_id == 0 and tracked.frame == t
        assert tracked.interpolated == (t in missing)
        assert tracked.source_index == (None if t in missing else 0)
        if t in missing:
            w = (t - missing.start + 1) / (len(missing) + 1)
            np.testing.assert_allclose(
                tracked.face.box, (1 - w) * np.array(before.box) + w * np.array(after.box)
            )
            np.testing.assert_allclose(
                tracked.face.landmarks, (1 - w) * before.landmarks + w * after.landmarks
            )
    if len(missing) == 1:  # a single missing frame lies halfway
        halfway = (np.array(before.box) + np.array(after.box)) / 2
        np.testing.assert_allclose(out[missing.start][0].face.box, halfway)


def test_gap_filling_with_smoothing_on_a_linear_path_lands_on_the_path() -> None:
    frames = [[face(100 + 6 * t, 100)] for t in range(12)]
    ids = [[0] for _ in frames]
    _remove(frames, ids, range(4, 7))
    out = smooth_and_fill(frames, ids, window=5)
    for t in range(4, 7):
        assert out[t][0].interpolated
        np.testing.assert_allclose(out[t][0].face.box, face(100 + 6 * t, 100).box, atol=1e-9)


def test_long_gaps_are_not_filled_and_landmarks_missing_around_gap() -> None:
    frames = [[face(100 + 2 * t, 100)] for t in range(14)]
    ids = [[0] for _ in frames]
    _remove(frames, ids, range(3, 10))  # 7 missing frames
    out = smooth_and_fill(frames, ids, max_gap=5)
    assert len(out) == 14
    assert [len(f) for f in out] == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert not any(t.interpolated for f in out for t in f)
    out = smooth_and_fill(frames, ids, max_gap=7)
    assert [len(f) for f in out] == [1] * 14

    # one neighbour without landmarks: the filled face gets a box but no landmarks
    frames = [[face(100, 100)], [], [face(104, 100, landmarks=False)]]
    out = smooth_and_fill(frames, [[0], [], [0]])
    assert out[1][0].interpolated and out[1][0].face.landmarks is None
    np.testing.assert_allclose(out[1][0].face.box, (102, 100, 162, 160))
    assert out[0][0].face.landmarks is not None and out[2][0].face.landmarks is None


def test_output_order_and_input_checks() -> None:
    frames = [[face(0, 0), face(200, 0)], [face(200, 0)], [face(0, 0), face(200, 0)]]
    ids = [[0, 1], [1], [0, 1]]
    out = smooth_and_fill(frames, ids)
    assert [[(t.track_id, t.interpolated) for t in f] for f in out] == [
        [(0, False), (1, False)],
        [(1, False), (0, True)],
        [(0, False), (1, False)],
    ]
    assert out[1][1].to_json()["interpolated"] is True
    with pytest.raises(ValueError, match="twice"):
        smooth_and_fill([[face(0, 0), face(9, 9)]], [[0, 0]])
    with pytest.raises(ValueError, match="track ids"):
        smooth_and_fill([[face(0, 0)]], [[]])
    with pytest.raises(ValueError, match="odd"):
        smooth_and_fill([[face(0, 0)]], [[0]], window=4)


def test_track_video_end_to_end() -> None:
    rng = np.random.default_rng(5)
    truth = [[face(20 + 5 * t, 50), face(400 - 4 * t, 220)] for t in range(30)]
    detections = []
    for t, faces in enumerate(truth):
        noisy = [f.with_landmarks(f.landmarks + rng.normal(0, 1.5, (68, 2))) for f in faces]
        if t in (10, 11):  # the detector misses the first face twice
            noisy = noisy[1:]
        detections.append(noisy[::-1] if t % 2 else noisy)  # order varies per frame
    out = track_video(detections)
    assert len(out) == 30
    for t, frame in enumerate(out):
        assert len(frame) == 2
        by_track = {tf.track_id: tf for tf in frame}
        assert set(by_track) == {0, 1}
        assert by_track[0].interpolated == (t in (10, 11))
        assert not by_track[1].interpolated
        for track, true_face in enumerate(truth[t]):
            err = np.abs(by_track[track].face.landmarks - true_face.landmarks).mean()
            assert err < 1.5


@pytest.mark.parametrize(
    ("length", "window", "polyorder"), [(3, 3, 2), (7, 5, 2), (40, 7, 3), (12, 5, 0)]
)
def test_savgol_equals_scipy_with_interp_edges(length: int, window: int, polyorder: int) -> None:
    """Our Savitzky-Golay (written out: scipy.signal takes ~0.9 s to import) against scipy's."""
    from scipy.signal import savgol_filter

    from deid.anonymizers.tracking import savgol_interp

    series = np.random.default_rng(length).normal(size=(length, 6)).cumsum(axis=0)
    expected = savgol_filter(series, window, polyorder, axis=0, mode="interp")
    np.testing.assert_allclose(savgol_interp(series, window, polyorder), expected, atol=1e-9)


def test_assignment_equals_scipy_in_total_cost() -> None:
    """Enumerated small assignments (and scipy's for large ones) reach scipy's optimum."""
    from scipy.optimize import linear_sum_assignment

    from deid.anonymizers.tracking import min_cost_assignment

    rng = np.random.default_rng(0)
    for rows, cols in [(1, 1), (1, 5), (3, 2), (4, 8), (8, 4), (2, 6), (6, 9), (12, 3)]:
        for _ in range(20):
            cost = rng.normal(size=(rows, cols))
            pairs = min_cost_assignment(cost)
            best_rows, best_cols = linear_sum_assignment(cost)
            assert len(pairs) == min(rows, cols)
            assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
            assert sum(cost[r, c] for r, c in pairs) == pytest.approx(
                cost[best_rows, best_cols].sum()
            )
