"""dlib's 68 landmarks on the astronaut: inside the face box, in the right places."""

from __future__ import annotations

import numpy as np
import pytest

from deid.faces import Face, LandmarkPredictor, build_detector, detect_with_landmarks
from deid.faces.landmarks import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE, inner_eye_centre


@pytest.fixture(scope="module")
def predictor() -> LandmarkPredictor:
    return LandmarkPredictor()


@pytest.fixture(scope="module")
def face_with_points(astronaut: np.ndarray, predictor: LandmarkPredictor) -> Face:
    faces = detect_with_landmarks(
        build_detector("dlib_hog", score_threshold=0.5), predictor, astronaut
    )
    assert len(faces) == 1
    return faces[0]


def test_68_points_inside_the_enlarged_box(face_with_points: Face) -> None:
    points = face_with_points.landmarks
    assert points.shape == (68, 2) and points.dtype == np.float64
    x0, y0, x1, y1 = face_with_points.box  # (175, 76, 266, 167)
    # the chin (point 8, y = 178) lies 11 px below HOG's box, so enlarge it by 15 % per side
    pad_x, pad_y = 0.15 * (x1 - x0), 0.15 * (y1 - y0)
    assert np.all(points[:, 0] >= x0 - pad_x) and np.all(points[:, 0] <= x1 + pad_x)
    assert np.all(points[:, 1] >= y0 - pad_y) and np.all(points[:, 1] <= y1 + pad_y)
    # and the inner face (eyes, nose, mouth) inside the box itself
    inner = points[list(RIGHT_EYE) + list(LEFT_EYE) + list(NOSE) + list(MOUTH)]
    assert np.all((inner >= (x0, y0)) & (inner <= (x1, y1)))


def test_points_are_in_anatomical_order(face_with_points: Face) -> None:
    points = face_with_points.landmarks
    right_eye = points[list(RIGHT_EYE)].mean(0)  # the subject's right: image left
    left_eye = points[list(LEFT_EYE)].mean(0)
    mouth = points[list(MOUTH)].mean(0)
    assert right_eye[0] < left_eye[0]
    assert max(right_eye[1], left_eye[1]) < points[30, 1] < mouth[1]  # eyes, nose tip, mouth
    # measured: eye centres (203.2, 101.5) and (246.5, 104.2)
    assert np.allclose(right_eye, (203.2, 101.5), atol=2)
    assert np.allclose(left_eye, (246.5, 104.2), atol=2)
    centre = inner_eye_centre(points)
    assert right_eye[0] < centre[0] < left_eye[0]


def test_add_landmarks_keeps_box_and_score(
    astronaut: np.ndarray, predictor: LandmarkPredictor
) -> None:
    face = Face((175.0, 76.0, 266.0, 167.0), 1.0, landmarks=np.zeros((5, 2)))
    [updated] = predictor.add_landmarks(astronaut, [face])
    assert updated.box == face.box and updated.score == face.score
    assert updated.landmarks.shape == (68, 2)
    assert np.array_equal(updated.landmarks, predictor.predict(astronaut, face.box))
