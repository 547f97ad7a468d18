"""The landmark image, face mask, point resizing (deid.faces.render) and the anti-aliased crop."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deid.faces.align import antialiased_crop, crop, rect_transform
from deid.faces.render import (
    INNER_LIPS,
    JAW,
    NOSE_BRIDGE,
    face_mask,
    landmark_image,
    mask_polygon,
    resize_points,
)

SIZE = (178, 218)  # width, height


def template_face(cx: float = 89.0, cy: float = 118.0, scale: float = 1.0) -> np.ndarray:
    """A plausible (68, 2) dlib layout: U-shaped jaw, brows, eyes, nose, lips."""
    points = np.zeros((68, 2))
    angles = np.linspace(np.pi, 0.0, 17)
    points[0:17] = np.c_[cx - 45 * np.cos(angles), cy - 10 + 50 * np.sin(angles)]
    points[17:22] = np.c_[np.linspace(cx - 40, cx - 8, 5), cy - 40 - np.array([0, 4, 6, 4, 2])]
    points[22:27] = np.c_[np.linspace(cx + 8, cx + 40, 5), cy - 40 - np.array([2, 4, 6, 4, 0])]
    points[27:31] = np.c_[np.full(4, cx), np.linspace(cy - 28, cy + 2, 4)]
    points[31:36] = np.c_[np.linspace(cx - 10, cx + 10, 5), np.full(5, cy + 6)]
    eye = np.c_[[-12, -7, 0, 5, 0, -7], [0, -3, -3, 0, 2, 2]]
    points[36:42] = eye + [cx - 20, cy - 28]
    points[42:48] = -eye[:, ::1] * [1, -1] + [cx + 20, cy - 28]
    lips = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    points[48:60] = np.c_[cx + 18 * np.cos(lips), cy + 22 + 8 * np.sin(lips)]
    inner = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    points[60:68] = np.c_[cx + 11 * np.cos(inner), cy + 22 + 3 * np.sin(inner)]
    return (points - [cx, cy]) * scale + [cx, cy]


def _segments(points: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    segments = []
    for indices, closed in ((JAW, False), (NOSE_BRIDGE, False), (INNER_LIPS, True)):
        chain = list(indices) + ([indices[0]] if closed else [])
        segments += [(points[a], points[b]) for a, b in zip(chain[:-1], chain[1:], strict=True)]
    return segments


def _distance_to_segments(xy: np.ndarray, segments: list[tuple[np.ndarray, np.ndarray]]):
    best = np.full(len(xy), np.inf)
    for a, b in segments:
        ab = b - a
        t = np.clip(((xy - a) @ ab) / max(ab @ ab, 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(xy - (a + t[:, None] * ab), axis=1))
    return best


def test_landmark_image_draws_exactly_the_three_curves() -> None:
    points = np.rint(template_face())
    image = landmark_image(points, SIZE)
    assert image.shape == (218, 178, 3) and image.dtype == np.uint8
    assert set(np.unique(image)) == {0, 255}
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
    ys, xs = np.nonzero(image[..., 0])
    distance = _distance_to_segments(np.c_[xs, ys].astype(float), _segments(points))
    assert distance.max() <= 1.0  # every white pixel lies on a drawn segment
    for index in (*JAW, *NOSE_BRIDGE, *INNER_LIPS):  # every used landmark is drawn
        x, y = points[index].astype(int)
        assert image[y, x, 0] == 255
    for index in (*range(17, 27), *range(36, 48)):  # brows and eyes are not drawn
        x, y = points[index].astype(int)
        assert image[y, x, 0] == 0
    # the jaw is open (no chord from ear to ear) and the inner lips are closed
    ear_chord = np.rint(0.75 * points[0] + 0.25 * points[16]).astype(int)
    assert image[ear_chord[1], ear_chord[0], 0] == 0
    lips_closing = np.rint((points[67] + points[60]) / 2).astype(int)
    assert image[lips_closing[1], lips_closing[0], 0] == 255


def test_landmark_image_lines_are_one_pixel_wide_unless_asked() -> None:
    points = template_face()
    thin = landmark_image(points, SIZE)
    thick = landmark_image(points, SIZE, thickness=3)
    # a horizontal scan across the nose bridge hits exactly one pixel of a 1-px line
    row = int(round((points[28, 1] + points[29, 1]) / 2))
    assert np.count_nonzero(thin[row, 60:120, 0]) == 1
    assert np.count_nonzero(thick[row, 60:120, 0]) >= 3  # OpenCV draws thickness 3 as 5 px
    assert np.count_nonzero(thick) > 2 * np.count_nonzero(thin)


def test_landmark_image_clips_points_outside_and_rejects_bad_input() -> None:
    points = template_face() + [60.0, 0.0]  # right half of the face outside the image
    image = landmark_image(points, SIZE)
    assert image.any() and image.shape == (218, 178, 3)
    assert not landmark_image(template_face() + 1e5, SIZE).any()
    with pytest.raises(ValueError, match="68, 2"):
        landmark_image(np.zeros((5, 2)), SIZE)
    with pytest.raises(ValueError, match="NaN"):
        landmark_image(np.full((68, 2), np.nan), SIZE)
    with pytest.raises(ValueError, match="positive"):
        landmark_image(template_face(), (0, 10))


def test_mask_polygon_is_the_jaw_closed_at_eyebrow_height() -> None:
    points = template_face()
    polygon = mask_polygon(points)
    assert polygon.shape == (19, 2)
    np.testing.assert_array_equal(polygon[:17], points[:17])
    np.testing.assert_array_equal(polygon[17], [points[16, 0], points[24, 1]])
    np.testing.assert_array_equal(polygon[18], [points[0, 0], points[19, 1]])


def test_face_mask_fills_the_polygon_interior_only() -> None:
    points = template_face()
    mask = face_mask(points, SIZE)
    assert mask.shape == (218, 178) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255}
    contour = mask_polygon(points).astype(np.float32).reshape(-1, 1, 2)
    ys, xs = np.mgrid[0:218, 0:178]
    signed = np.array(
        [
            cv2.pointPolygonTest(contour, (float(x), float(y)), True)
            for x, y in zip(xs.ravel(), ys.ravel(), strict=True)
        ]
    ).reshape(mask.shape)
    assert (mask[signed > 1.0] == 255).all()  # the interior is covered
    assert (mask[signed < -1.0] == 0).all()  # nothing outside
    # the face (nose, lips, eyes) is inside, the forehead above the brows and the neck are not
    for index in (30, 33, 39, 42, 62, 66):
        x, y = np.rint(points[index]).astype(int)
        assert mask[y, x] == 255
    top = int(points[[19, 24], 1].min())
    assert not mask[: top - 1].any()
    chin = int(points[8, 1])
    assert not mask[chin + 2 :].any()


def test_resize_points_round_trip_and_pixel_centres() -> None:
    points = np.random.default_rng(0).uniform(-5, 200, size=(68, 2))
    there = resize_points(points, (178, 218), (128, 128))
    back = resize_points(there, (128, 128), (178, 218))
    np.testing.assert_allclose(back, points, atol=1e-9)
    # the image corners' edges map to edges: pixel centre 0 -> (0.5 * s - 0.5)
    np.testing.assert_allclose(
        resize_points(np.array([[0.0, 0.0]]), (100, 50), (50, 100)), [[-0.25, 0.5]]
    )


def test_resize_points_follows_cv2_resize() -> None:
    """A blob drawn at a sub-pixel position lands where resize_points says after cv2.resize."""
    ys, xs = np.mgrid[0:218, 0:178].astype(np.float64)
    centre = np.array([61.3, 140.7])
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 6.0**2))
    small = cv2.resize(blob.astype(np.float32), (128, 128), interpolation=cv2.INTER_LINEAR)
    sy, sx = np.mgrid[0:128, 0:128]
    found = np.array([(small * sx).sum(), (small * sy).sum()]) / small.sum()
    expected = resize_points(centre[None], (178, 218), (128, 128))[0]
    np.testing.assert_allclose(found, expected, atol=0.05)


def test_antialiased_crop_equals_the_plain_warp_when_not_shrinking(astronaut: np.ndarray) -> None:
    transform = rect_transform((150, 40, 330, 260), (178, 218))  # ~1:1
    np.testing.assert_array_equal(
        antialiased_crop(astronaut, transform), crop(astronaut, transform)
    )


def test_antialiased_crop_shrinks_without_aliasing_and_keeps_the_geometry() -> None:
    height, width = 980, 820
    stripes = np.zeros((height, width, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-px stripes: aliasing turns them into bands, averaging into grey
    shrink = 4.3  # not an integer, so plain bilinear sampling beats against the stripes
    transform = rect_transform((50, 20, 50 + 178 * shrink, 20 + 218 * shrink), (178, 218))
    plain = crop(stripes, transform).astype(float)
    smooth = antialiased_crop(stripes, transform).astype(float)
    assert plain.std() > 60
    assert smooth.std() < 12 and abs(smooth.mean() - 127.5) < 3
    # a bright blob lands where the transform maps its centre, to a fraction of a crop pixel
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    centre = np.array([413.0, 517.0])
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 20.0**2))
    image = np.repeat((blob * 255).astype(np.uint8)[..., None], 3, axis=2)
    out = antialiased_crop(image, transform)[..., 0].astype(float)
    cy, cx = np.mgrid[0:218, 0:178]
    found = np.array([(out * cx).sum(), (out * cy).sum()]) / out.sum()
    np.testing.assert_allclose(found, transform.apply(centre)[0], atol=0.2)


def test_antialiased_crop_pads_by_replicating_the_border(astronaut: np.ndarray) -> None:
    transform = rect_transform((-400, -400, 312, 472), (178, 218))  # 4x shrink, past the corner
    out = antialiased_crop(astronaut, transform)
    assert out.shape == (218, 178, 3)
    # the area left of and above the image repeats the image's top-left pixels
    corner = astronaut[:4, :4].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(out[:50, :50].reshape(-1, 3).mean(axis=0), corner, atol=12)
