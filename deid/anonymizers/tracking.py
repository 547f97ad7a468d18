"""Face tracking across video frames, temporal smoothing and gap filling.

The video runner uses three pure steps:

1. `FaceTracker.update(frame, faces)` (online): gives every detection in a frame a track id.
2. `smooth_and_fill(detections, track_ids)` (offline, over the whole video): per track,
   Savitzky-Golay smoothing of boxes and landmarks over time, and linear gap filling for
   frames where the detector missed a face between two detections of the same track.
3. `track_video(detections)`: both of the above in one call.

Gap convention, shared by the tracker and `smooth_and_fill`: a *gap* is the number of
consecutive frames a track is missing between two of its detections (a face seen in frames 3
and 6 has a gap of 2). The tracker keeps a track alive, and `smooth_and_fill` fills it in, as long
as the gap is at most `max_gap` frames. `max_gap=0` means a face must be seen in every frame.

Association: Hungarian matching (`scipy.optimize.linear_sum_assignment`) that maximises the
total IoU between tracks and detections, keeping pairs with IoU >= `iou_threshold`. Each track is
compared twice, by its last box and by that box moved on at the track's last velocity, and the
better overlap counts, so a fast but steadily moving face still overlaps its prediction. Tracks
and detections left over after that are matched in a second Hungarian pass on centre distance
relative to the face size (`center_distance`, in face sizes; `None` turns it off) when the sizes
differ by at most a factor 2: a face that jumped further than its own width between frames.
Hungarian rather than greedy: it maximises the overlap of the whole frame, so two crossing faces
do not steal each other's track just because one pair happens to be considered first, and it is
deterministic (ties break by index).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deid.faces.types import Face

Box = Sequence[float]

_MAX_SCALE_CHANGE = 2.0  # centre-distance fallback: sizes may differ by at most this factor


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1); 0 for empty or degenerate boxes."""
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    iw = min(ax1, bx1) - max(ax0, bx0)
    ih = min(ay1, by1) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = max(ax1 - ax0, 0.0) * max(ay1 - ay0, 0.0) + max(bx1 - bx0, 0.0) * max(by1 - by0, 0.0)
    union -= inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class TrackedFace:
    """One face of one track in one frame, after smoothing (and maybe interpolated).

    `source_index` is the index into that frame's detections, or None when `interpolated` is
    True (the detector missed the face in this frame and the box/landmarks were filled in).
    """

    frame: int
    track_id: int
    face: Face
    interpolated: bool
    source_index: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "track_id": self.track_id,
            "interpolated": self.interpolated,
            "source_index": self.source_index,
            **self.face.to_json(),
        }


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # last observed box, (4,)
    frame: int  # frame of the last observation
    velocity: np.ndarray  # box change per frame, (4,)

    def predicted(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.frame)


def _size(box: np.ndarray) -> float:
    return float((box[2] - box[0]) + (box[3] - box[1])) / 2


def _center(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


_EXHAUSTIVE_SIDE = 4  # assignments with at most this many rows or columns are enumerated
_EXHAUSTIVE_OTHER = 8  # ... when the other side has at most this many


def min_cost_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Rows matched to columns (min(r, c) pairs) with the least total cost, like scipy's
    `linear_sum_assignment`. Small problems (every frame of a video with a few faces) are
    enumerated: importing scipy.optimize costs ~0.7 s, more than tracking a whole clip."""
    rows, cols = cost.shape
    if min(rows, cols) > _EXHAUSTIVE_SIDE or max(rows, cols) > _EXHAUSTIVE_OTHER:
        from scipy.optimize import linear_sum_assignment

        found = linear_sum_assignment(cost)
        return [(int(r), int(c)) for r, c in zip(*found, strict=True)]
    flipped = rows > cols
    table = (cost.T if flipped else cost).tolist()
    best: tuple[int, ...] = ()
    best_total = float("inf")
    for choice in itertools.permutations(range(len(table[0])), len(table)):
        total = sum(row[j] for row, j in zip(table, choice, strict=True))
        if total < best_total:
            best, best_total = choice, total
    pairs = [(j, i) if flipped else (i, j) for i, j in enumerate(best)]
    return sorted(pairs)


def _match(cost: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """Hungarian matching on `cost` (lower is better, allowed entries negative), allowed only."""
    if cost.size == 0 or not allowed.any():
        return []
    pairs = min_cost_assignment(np.where(allowed, cost, 0.0))
    return [(r, c) for r, c in pairs if allowed[r, c]]


class FaceTracker:
    """Online face tracker: call `update` once per frame, in increasing frame order.

    Track ids are consecutive ints from 0 in order of first appearance (new tracks within one
    frame in detection order). A track missing for more than `max_gap` consecutive frames ends;
    a face that comes back later gets a new id.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_gap: int = 5,
        *,
        center_distance: float | None = 1.0,
    ) -> None:
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap}")
        if center_distance is not None and center_distance < 0:
            raise ValueError(f"center_distance must be >= 0 or None, got {center_distance}")
        self.iou_threshold = float(iou_threshold)
        self.max_gap = int(max_gap)
        self.center_distance = center_distance
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._last_frame: int | None = None

    @property
    def num_tracks(self) -> int:
        """How many track ids were handed out so far."""
        return self._next_id

    @property
    def active_track_ids(self) -> list[int]:
        """Ids of tracks that can still be continued (seen within the last `max_gap` frames)."""
        return [t.track_id for t in self._tracks]

    def update(self, frame_index: int, faces: Sequence[Face]) -> list[int]:
        """Associate this frame's detections with tracks; returns one track id per face."""
        frame_index = int(frame_index)
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(
                f"frames must come in increasing order: got {frame_index} after {self._last_frame}"
            )
        self._last_frame = frame_index
        self._tracks = [t for t in self._tracks if frame_index - t.frame - 1 <= self.max_gap]

        boxes = [np.asarray(f.box, dtype=np.float64) for f in faces]
        pairs = self._associate(frame_index, boxes)

        ids: list[int | None] = [None] * len(boxes)
        for ti, di in pairs:
            track = self._tracks[ti]
            track.velocity = (boxes[di] - track.box) / (frame_index - track.frame)
            track.box = boxes[di]
            track.frame = frame_index
            ids[di] = track.track_id
        for di, box in enumerate(boxes):
            if ids[di] is None:
                track = _Track(self._next_id, box, frame_index, np.zeros(4))
                self._next_id += 1
                self._tracks.append(track)
                ids[di] = track.track_id
        return [int(i) for i in ids if i is not None]

    def _associate(self, frame: int, boxes: list[np.ndarray]) -> list[tuple[int, int]]:
        tracks = self._tracks
        if not tracks or not boxes:
            return []
        overlap = np.array(
            [[max(iou(t.box, b), iou(t.predicted(frame), b)) for b in boxes] for t in tracks]
        )
        allowed = (overlap >= self.iou_threshold) & (overlap > 0)
        pairs = _match(-overlap, allowed)
        if self.center_distance is None:
            return pairs

        free_t = [i for i in range(len(tracks)) if i not in {p[0] for p in pairs}]
        free_d = [j for j in range(len(boxes)) if j not in {p[1] for p in pairs}]
        if not free_t or not free_d:
            return pairs
        limit = float(self.center_distance)
        dist = np.full((len(free_t), len(free_d)), np.inf)
        for a, ti in enumerate(free_t):
            t = tracks[ti]
            size = _size(t.box)
            if size <= 0:
                continue
            refs = (_center(t.box), _center(t.predicted(frame)))
            for b, di in enumerate(free_d):
                ratio = _size(boxes[di]) / size
                if not 1 / _MAX_SCALE_CHANGE <= ratio <= _MAX_SCALE_CHANGE:
                    continue
                c = _center(boxes[di])
                dist[a, b] = min(float(np.linalg.norm(c - r)) for r in refs) / size
        near = dist <= limit
        # Every allowed pair costs in [-(limit + 1), -1]: nearer is better, more pairs is better.
        cost = np.where(near, dist - (limit + 1.0), 0.0)
        pairs += [(free_t[a], free_d[b]) for a, b in _match(cost, near)]
        return pairs


def _check_window(window: int, polyorder: int) -> None:
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number of frames, got {window}")
    if polyorder < 0:
        raise ValueError(f"polyorder must be >= 0, got {polyorder}")
    if window > 1 and polyorder >= window:
        raise ValueError(f"polyorder ({polyorder}) must be smaller than window ({window})")


def _smooth(series: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Savitzky-Golay over axis 0 of (n, D); shorter series use the largest odd window that fits.

    Edges use scipy's `mode="interp"` (a polynomial fitted to the first/last window), which
    follows a moving face to the end of its track instead of pulling it back as mirroring would.
    A window that cannot exceed `polyorder` (1-2 frames for polyorder 2) leaves the series as is.
    """
    n = len(series)
    w = min(window, n if n % 2 else n - 1)
    if w < 3 or w <= polyorder:
        return series.copy()
    return savgol_interp(np.asarray(series, dtype=np.float64), w, polyorder)


def savgol_interp(series: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Savitzky-Golay smoothing over axis 0 of (n, D), n >= window, with scipy's `interp`
    edges: the first and last `window // 2` values come from the polynomial fitted to the
    first / last window. Written out (a least-squares fit per window position) because
    scipy.signal takes ~0.9 s to import; tests compare it with scipy's savgol_filter."""
    half = window // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    vander = np.vander(offsets, polyorder + 1, increasing=True)  # (window, polyorder + 1)
    fitted = vander @ np.linalg.pinv(vander)  # row t: the fit's value at offset t, from a window
    out = np.empty_like(series)
    windows = np.lib.stride_tricks.sliding_window_view(series, window, axis=0)  # (m, D, window)
    out[half : len(series) - half] = windows @ fitted[half]
    out[:half] = fitted[:half] @ series[:window]
    out[len(series) - half :] = fitted[half + 1 :] @ series[-window:]
    return out


def _interp_rows(frames: np.ndarray, known: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Linear interpolation of rows `values` (m, D) known at `known` frames onto `frames`."""
    return np.stack([np.interp(frames, known, values[:, k]) for k in range(values.shape[1])], 1)


def _segments(observations: list[tuple[int, int]], max_gap: int) -> list[list[tuple[int, int]]]:
    """Split a track's (frame, index) observations where the gap exceeds `max_gap`."""
    segments = [[observations[0]]]
    for obs in observations[1:]:
        if obs[0] - segments[-1][-1][0] - 1 > max_gap:
            segments.append([obs])
        else:
            segments[-1].append(obs)
    return segments


def _landmark_runs(landmarks: list[np.ndarray | None]) -> list[tuple[int, int]]:
    """[start, end) runs of consecutive entries that have landmarks of one shape."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, lm in enumerate([*landmarks, None]):
        if start is not None and (lm is None or lm.shape != landmarks[start].shape):
            runs.append((start, i))
            start = None
        if start is None and lm is not None:
            start = i
    return runs


def _fill_segment(
    track_id: int,
    segment: list[tuple[int, int]],
    detections: Sequence[Sequence[Face]],
    window: int,
    polyorder: int,
) -> list[TrackedFace]:
    """Smoothed (and gap-filled) faces of one track segment, one per frame it spans."""
    first, last = segment[0][0], segment[-1][0]
    frames = np.arange(first, last + 1)
    known = np.array([f for f, _ in segment])
    observed = {f: detections[f][i] for f, i in segment}
    source = dict(segment)

    boxes = _interp_rows(frames, known, np.array([observed[f].box for f in known]))
    boxes = _smooth(boxes, window, polyorder)

    # Landmarks per frame: observed ones, or interpolated between the two detections around a
    # gap when both have landmarks of one shape; None otherwise. A detection whose landmarks
    # failed keeps None (the runner decides what to do with it; nothing is invented for it).
    landmarks: list[np.ndarray | None] = []
    scores: list[float] = []
    for frame in frames:
        if frame in observed:
            landmarks.append(observed[frame].landmarks)
            scores.append(observed[frame].score)
            continue
        k = int(np.searchsorted(known, frame))
        before, after = observed[known[k - 1]], observed[known[k]]
        scores.append(min(before.score, after.score))
        lb, la = before.landmarks, after.landmarks
        if lb is None or la is None or lb.shape != la.shape:
            landmarks.append(None)
            continue
        t = (frame - known[k - 1]) / (known[k] - known[k - 1])
        landmarks.append((1 - t) * lb + t * la)
    for start, end in _landmark_runs(landmarks):
        run = np.stack(landmarks[start:end])
        smooth = _smooth(run.reshape(end - start, -1), window, polyorder).reshape(run.shape)
        landmarks[start:end] = list(smooth)

    return [
        TrackedFace(
            frame=int(frame),
            track_id=track_id,
            face=Face(box=tuple(boxes[k]), score=scores[k], landmarks=landmarks[k]),
            interpolated=int(frame) not in source,
            source_index=source.get(int(frame)),
        )
        for k, frame in enumerate(frames)
    ]


def _extension(segment_faces: list[TrackedFace], extend: int, num_frames: int) -> list[TrackedFace]:
    """The first and last face of a segment held for `extend` frames before and after it."""
    first, last = segment_faces[0], segment_faces[-1]
    before = range(max(0, first.frame - extend), first.frame)
    after = range(last.frame + 1, min(num_frames, last.frame + extend + 1))
    return [
        TrackedFace(frame, end.track_id, end.face, interpolated=True, source_index=None)
        for frames, end in ((before, first), (after, last))
        for frame in frames
    ]


def smooth_and_fill(
    detections: Sequence[Sequence[Face]],
    track_ids: Sequence[Sequence[int]],
    window: int = 5,
    polyorder: int = 2,
    max_gap: int = 5,
    extend: int = 0,
) -> list[list[TrackedFace]]:
    """Temporally smooth every track and fill its short gaps; returns the faces of every frame.

    `detections[f][i]` has track id `track_ids[f][i]`. Per track, split wherever it is missing
    for more than `max_gap` frames, each piece is laid on a dense frame grid (missing frames
    linearly interpolated between the detections around them) and smoothed with a
    Savitzky-Golay filter of `window` frames and `polyorder` (boxes always, landmarks over runs
    of frames that have them; see `_smooth` for short tracks and edges). `window=1` disables
    smoothing. `extend` > 0 holds each piece's first and last face for that many frames before
    and after it (a detector that looks at every k-th frame only saw the face up to k-1 frames
    late or early). Every detection appears in the output exactly once, in its frame's
    detection order, followed by that frame's interpolated faces by track id.
    """
    _check_window(window, polyorder)
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    if len(detections) != len(track_ids):
        raise ValueError(
            f"detections and track_ids differ in length: {len(detections)} vs {len(track_ids)}"
        )
    observations: dict[int, list[tuple[int, int]]] = {}
    for frame, (faces, ids) in enumerate(zip(detections, track_ids, strict=True)):
        if len(faces) != len(ids):
            raise ValueError(f"frame {frame}: {len(faces)} detections but {len(ids)} track ids")
        if len(set(ids)) != len(ids):
            raise ValueError(f"frame {frame}: a track id appears twice: {list(ids)}")
        for index, track in enumerate(ids):
            observations.setdefault(int(track), []).append((frame, index))

    if extend < 0:
        raise ValueError(f"extend must be >= 0, got {extend}")
    observed: list[list[TrackedFace | None]] = [[None] * len(faces) for faces in detections]
    filled: list[list[TrackedFace]] = [[] for _ in detections]
    for track in sorted(observations):
        pieces = [
            _fill_segment(track, segment, detections, window, polyorder)
            for segment in _segments(observations[track], max_gap)
        ]
        taken = {t.frame for piece in pieces for t in piece}
        for piece in pieces:
            held = _extension(piece, extend, len(detections)) if extend else []
            for tracked in piece + [t for t in held if t.frame not in taken]:
                taken.add(tracked.frame)
                if tracked.source_index is None:
                    filled[tracked.frame].append(tracked)
                else:
                    observed[tracked.frame][tracked.source_index] = tracked
    return [
        [t for t in obs if t is not None] + fill for obs, fill in zip(observed, filled, strict=True)
    ]


def track_video(
    detections: Sequence[Sequence[Face]],
    iou_threshold: float = 0.3,
    max_gap: int = 5,
    window: int = 5,
    polyorder: int = 2,
    extend: int = 0,
) -> list[list[TrackedFace]]:
    """Track faces over the frames `detections` (frame 0, 1, ...), then `smooth_and_fill`."""
    tracker = FaceTracker(iou_threshold=iou_threshold, max_gap=max_gap)
    track_ids = [tracker.update(frame, faces) for frame, faces in enumerate(detections)]
    return smooth_and_fill(
        detections, track_ids, window=window, polyorder=polyorder, max_gap=max_gap, extend=extend
    )
