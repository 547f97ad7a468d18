"""Demo inputs made of real demo photos: a group photo and a short video with moving faces.

The video moves and scales three photos over a grey stage; as a face shrinks below what dlib's
HOG detector sees (about 40 px at upsample 1) it is missed for a few frames, which is what the
tracker's gap filling is for.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from deid.media import VideoWriter, read_image

GROUP = ("madonna", "elton_john", "jerry_seinfeld")


def _portrait(demo_root: Path, name: str, height: int) -> np.ndarray:
    """The first validation photo of `name`, resized to `height` (aspect kept)."""
    path = sorted((demo_root / "val" / name).glob("*.jpg"))[0]
    photo = read_image(path)
    scale = height / photo.shape[0]
    return cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def group_photo(demo_root: Path, names: tuple[str, ...] = GROUP, height: int = 360) -> np.ndarray:
    """Portraits side by side with a thin gap: one image, several faces."""
    gap = np.full((height, 12, 3), 235, np.uint8)
    parts: list[np.ndarray] = []
    for name in names:
        parts += [_portrait(demo_root, name, height), gap]
    return np.concatenate(parts[:-1], axis=1)


def _place(canvas: np.ndarray, photo: np.ndarray, centre: tuple[float, float]) -> None:
    """Paste `photo` centred at `centre`, clipped to the canvas."""
    height, width = photo.shape[:2]
    x0, y0 = round(centre[0] - width / 2), round(centre[1] - height / 2)
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + width, canvas.shape[1]), min(y0 + height, canvas.shape[0])
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = photo[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


def moving_faces_frames(
    demo_root: Path,
    frames: int = 48,
    size: tuple[int, int] = (640, 480),
    names: tuple[str, ...] = GROUP,
) -> list[np.ndarray]:
    """Frames where each photo drifts sideways and breathes in scale (0.36x-1x)."""
    width, height = size
    base = [_portrait(demo_root, name, 260) for name in names]
    result = []
    for t in range(frames):
        canvas = np.full((height, width, 3), 120, np.uint8)
        for i, photo in enumerate(base):
            phase = 2 * math.pi * (t / frames) + i * 2.1
            scale = 0.68 + 0.32 * math.sin(phase)
            small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            x = width * (i + 0.5) / len(base) + 30 * math.sin(phase / 2)
            y = height / 2 + 40 * math.cos(phase)
            _place(canvas, small, (x, y))
        result.append(canvas)
    return result


def write_moving_faces_video(demo_root: Path, path: Path, fps: float = 12.0, **options) -> Path:
    """Write the moving-faces clip (mp4) and return its path."""
    frames = moving_faces_frames(demo_root, **options)
    height, width = frames[0].shape[:2]
    with VideoWriter(path, fps=fps, size=(width, height)) as writer:
        for frame in frames:
            writer.write(frame)
    return path
