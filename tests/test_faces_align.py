"""Crop transforms: exact geometry, serialisation, and paste-back that touches only the face."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from deid.faces import (
    CropTransform,
    box_transform,
    crop,
    eye_transform,
    facenet_rect,
    facenet_transform,
    paste_back,
    rect_transform,
)

HOG_BOX = (175.0, 76.0, 266.0, 167.0)  # dlib HOG's astronaut face (test_faces_detectors.py)


def _ramps(height: int = 300, width: int = 400) -> np.ndarray:
    """A float image whose channels are each pixel's own x and y: geometry made visible."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.dstack([xs, ys, np.zeros_like(xs)])


def test_serialisation_round_trip() -> None:
    transform = box_transform(HOG_BOX, 160, margin=0.1)
    again = CropTransform.from_json(json.loads(json.dumps(transform.to_json())))
    assert np.array_equal(again.matrix, transform.matrix) and again.size == transform.size
    flat = CropTransform.from_list(transform.to_list())
    assert np.array_equal(flat.matrix, transform.matrix) and flat.size == (160, 160)


def test_inverse_maps_points_back() -> None:
    transform = eye_transform(_fake_landmarks((210.0, 100.0), (236.0, 106.0)))
    points = np.array([[0.0, 0.0], [100.5, 33.25], [511.0, 7.0]])
    assert np.allclose(transform.apply_inverse(transform.apply(points)), points, atol=1e-9)
    composed = np.vstack([transform.inverse(), [0, 0, 1]]) @ np.vstack(
        [transform.matrix, [0, 0, 1]]
    )
    assert np.allclose(composed, np.eye(3), atol=1e-12)


def test_rect_transform_equals_resize_of_the_slice(astronaut: np.ndarray) -> None:
    for rect, size in (((175, 76, 266, 167), (160, 160)), ((100, 50, 400, 420), (150, 185))):
        mine = crop(astronaut, rect_transform(rect, size))
        x0, y0, x1, y1 = rect
        ref = cv2.resize(astronaut[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR)
        # interior only: resize replicates the slice's own border, crop sees the real neighbours
        diff = np.abs(mine.astype(int) - ref)[4:-4, 4:-4]
        assert diff.max() <= 1  # fixed-point rounding only


def test_facenet_crop_matches_facenet_pytorch(astronaut: np.ndarray) -> None:
    from facenet_pytorch import extract_face

    mtcnn_box = (181.05, 62.16, 267.75, 172.05)  # MTCNN's astronaut box
    for box in (mtcnn_box, (-20.0, 300.0, 90.0, 420.0), (450.3, 440.1, 530.9, 530.2)):
        ref = extract_face(astronaut, np.array(box), image_size=160, margin=14)
        ref = ref.permute(1, 2, 0).numpy()
        mine = crop(astronaut, facenet_transform(box, astronaut.shape), interpolation="area")
        assert mine.shape == (160, 160, 3)
        assert np.array_equal(mine.astype(np.float32), ref), box


def test_facenet_margin_is_in_output_pixels() -> None:
    # a 146 px box with margin 14 at 160 px: 14 * 146 / 146 = 14 px in total, 7 per side
    assert facenet_rect((100, 100, 246, 246), 160, 14) == (93, 93, 253, 253)
    # clipped to the image like facenet-pytorch does
    assert facenet_rect((0, 0, 146, 146), 160, 14, image_shape=(200, 150, 3)) == (0, 0, 150, 153)


def test_crop_to_paste_back_geometry_is_exact() -> None:
    image = _ramps()
    transform = box_transform((120.3, 80.7, 230.1, 190.2), 160, margin=0.2)
    face = crop(image, transform)
    # the crop samples each image position; points map with the transform
    centre = transform.apply(np.array([[175.2, 135.45]]))[0]
    assert np.allclose(face[int(round(centre[1])), int(round(centre[0])), :2], [175, 135], atol=1)
    back = paste_back(image, face, transform, interpolation="linear")
    # bilinear interpolation reproduces linear ramps: the round trip is exact to float error
    inner = (slice(90, 180), slice(130, 220))
    assert np.abs(back[inner] - image[inner]).max() < 1e-3


def test_round_trip_on_a_real_face(astronaut: np.ndarray) -> None:
    transform = box_transform(HOG_BOX, 160, margin=0.15)
    back = paste_back(astronaut, crop(astronaut, transform, "cubic"), transform)
    x0, y0, x1, y1 = transform.source_rect()
    inside = (slice(int(y0) + 2, int(y1) - 2), slice(int(x0) + 2, int(x1) - 2))
    error = np.abs(back[inside].astype(int) - astronaut[inside])
    # two resamplings blur a little: measured mean 0.55 grey levels, 99th percentile 3
    # (bilinear both ways: 2.2 and 13; the geometry itself is exact, see the ramp test)
    assert error.mean() < 0.8 and np.percentile(error, 99) <= 4
    outside = np.ones(astronaut.shape[:2], bool)
    outside[int(y0) - 2 : int(y1) + 3, int(x0) - 2 : int(x1) + 3] = False
    assert np.array_equal(back[outside], astronaut[outside])  # bit-identical


def test_paste_back_touches_only_the_mask(astronaut: np.ndarray) -> None:
    transform = box_transform(HOG_BOX, 128, margin=0.1)
    black = np.zeros((128, 128, 3), np.uint8)
    mask = np.zeros((128, 128), bool)
    cv2.circle(mask.view(np.uint8), (64, 64), 40, 1, -1)
    hard = paste_back(astronaut, black, transform, mask=mask)
    changed = np.any(hard != astronaut, axis=2)
    centre = np.round(transform.apply_inverse(np.array([[64.0, 64.0]]))[0]).astype(int)
    assert np.all(hard[centre[1], centre[0]] == 0)
    ys, xs = np.nonzero(changed)
    radius = 41 * (HOG_BOX[2] - HOG_BOX[0]) * 1.2 / 128  # circle radius in image pixels, +1
    assert np.hypot(xs - centre[0], ys - centre[1]).max() <= radius + 1
    soft = paste_back(astronaut, black, transform, mask=mask, feather=10)
    soft_changed = np.any(soft != astronaut, axis=2)
    assert not np.any(soft_changed & ~changed)  # feathering only shrinks the region
    # inside the feather ring the face is darkened, not blacked out
    ring = soft_changed & np.any(soft > 0, axis=2)
    assert ring.sum() > 100


def test_paste_back_of_an_off_image_crop_changes_nothing(astronaut: np.ndarray) -> None:
    transform = rect_transform((600, 600, 700, 700), 50)
    back = paste_back(astronaut, np.zeros((50, 50, 3), np.uint8), transform)
    assert np.array_equal(back, astronaut)


def _fake_landmarks(
    inner_right: tuple[float, float], inner_left: tuple[float, float]
) -> np.ndarray:
    points = np.zeros((68, 2))
    points[39], points[42] = inner_right, inner_left
    return points


def test_eye_crop_geometry(astronaut: np.ndarray) -> None:
    points = _fake_landmarks((210.0, 100.0), (230.0, 100.0))  # 20 px apart
    transform = eye_transform(points)
    face = crop(astronaut, transform)
    assert face.shape == (218, 178, 3)
    mapped = transform.apply(points[[39, 42]])
    # the eye midpoint lands in the crop centre; their distance is 1/10 of the crop height
    assert np.allclose(mapped.mean(0), (88.5, 108.5), atol=1e-9)
    assert np.hypot(*(mapped[1] - mapped[0])) == pytest.approx(21.8)
    # a face near the corner is edge-padded, never black
    corner = crop(astronaut, eye_transform(_fake_landmarks((2.0, 3.0), (22.0, 3.0))))
    assert np.array_equal(corner[0, 0], astronaut[0, 0])


def test_area_needs_an_integer_axis_aligned_rect(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="integer rectangle"):
        crop(astronaut, rect_transform((10.5, 10, 50, 50), 20), interpolation="area")
    with pytest.raises(ValueError, match="unknown interpolation"):
        crop(astronaut, rect_transform((10, 10, 50, 50), 20), interpolation="lanczos")
