"""Detection rate (protocols.md section 6) with the real dlib HOG detector and a scripted one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from deid_eval.metrics.detection import DetectionRate

# dlib HOG (upsample 1) on skimage's astronaut: the face, and a weak false positive lower left
ASTRONAUT_FACE = (175, 76, 266, 167)
FALSE_POSITIVE_SCORE = 0.117


@pytest.fixture(scope="module")
def hog():  # noqa: ANN201 - a deid.faces detector
    from deid.faces import build_detector

    return build_detector("dlib_hog")  # upsample=1, dlib's own threshold 0: detector(img, 1)


def rate(detector: object, images: list[np.ndarray], threshold: float = 0.0) -> float:
    metric = DetectionRate(detector, score_threshold=threshold)
    metric.update(images, [True] * len(images))
    return float(metric.compute())


def test_blank_images_give_zero(hog: object) -> None:
    blank = [np.zeros((256, 256, 3), np.uint8), np.full((200, 300, 3), 128, np.uint8)]
    assert rate(hog, blank) == 0.0


def test_astronaut_found_and_blacked_out_face_not(hog: object, astronaut: np.ndarray) -> None:
    faces = hog.detect(astronaut)
    assert faces[0].box == pytest.approx(ASTRONAUT_FACE, abs=3)
    assert rate(hog, [astronaut]) == 1.0

    blacked = astronaut.copy()
    x0, y0, x1, y1 = ASTRONAUT_FACE
    blacked[y0:y1, x0:x1] = 0
    metric = DetectionRate(hog, score_threshold=0.5)
    metric.update([astronaut, blacked], [True, True])
    assert float(metric.compute()) == 0.5  # only the clean image counts
    # At dlib's default threshold the weak false positive (patch on the suit) still counts,
    # which is why the threshold is part of every reported rate.
    remaining = hog.detect(blacked)
    assert len(remaining) == 1 and remaining[0].score == pytest.approx(
        FALSE_POSITIVE_SCORE, abs=0.01
    )
    assert rate(hog, [blacked[:300]]) == 0.0  # the top crop holds no false positive
    assert metric.settings == {"detector": "dlib_hog", "score_threshold": 0.5}


@dataclass
class Found:
    score: float


class Scripted:
    """A detector stand-in: image value v -> one detection of score v / 100; counts calls."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Found]:
        self.calls += 1
        value = int(image.flat[0])
        return [Found(value / 100)] if value else []


def images_of(values: list[int]) -> list[np.ndarray]:
    return [np.full((4, 4, 3), v, np.uint8) for v in values]


def test_unevaluated_images_are_skipped(hog: object, astronaut: np.ndarray) -> None:
    metric = DetectionRate(hog)
    black = np.zeros((64, 64, 3), np.uint8)
    metric.update([astronaut, black], torch.tensor([False, True]))
    assert float(metric.compute()) == 0.0 and int(metric.n_evaluated) == 1

    scripted = Scripted()
    metric = DetectionRate(scripted, score_threshold=0.5)
    metric.update(images_of([90, 90, 10, 0]), [False, True, True, True])
    assert scripted.calls == 3
    assert float(metric.compute()) == pytest.approx(1 / 3)


def test_threshold_batches_and_merge() -> None:
    values = [0, 30, 50, 49, 80, 100, 0, 70, 20, 60]
    evaluated = [True, True, True, True, False, True, True, True, True, False]
    # evaluated scores >= 0.5: 50, 100, 70 -> 3 of 8
    one = DetectionRate(Scripted(), score_threshold=0.5)
    one.update(images_of(values), evaluated)
    assert float(one.compute()) == pytest.approx(3 / 8)

    batched = DetectionRate(Scripted(), score_threshold=0.5)
    for start in range(0, 10, 3):
        batched.update(images_of(values[start : start + 3]), evaluated[start : start + 3])
    rank_a, rank_b = DetectionRate(Scripted(), 0.5), DetectionRate(Scripted(), 0.5)
    rank_a.update(images_of(values[:4]), evaluated[:4])
    rank_b.update(images_of(values[4:]), evaluated[4:])
    rank_a.merge_state(rank_b)
    assert float(batched.compute()) == float(rank_a.compute()) == float(one.compute())
    assert DetectionRate.higher_is_better is True


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_misuse_is_explained() -> None:
    with pytest.raises(ValueError, match="2 images but 3"):
        DetectionRate(Scripted()).update(images_of([1, 2]), [True, True, True])
    with pytest.raises(TypeError, match="detect"):
        DetectionRate(object())  # type: ignore[arg-type]
    strict = Scripted()
    strict.score_threshold = 0.9  # type: ignore[attr-defined]
    with pytest.warns(UserWarning, match="effectively 0.9"):
        DetectionRate(strict, score_threshold=0.5)
    with pytest.warns(UserWarning, match="no evaluated images"):
        assert torch.isnan(DetectionRate(Scripted()).compute())


def test_precomputed_detections_equal_running_the_detector(astronaut: np.ndarray) -> None:
    from deid.faces import build_detector

    detector = build_detector("dlib_hog")
    images = [astronaut, np.zeros_like(astronaut), astronaut[::-1].copy()]
    evaluated = [True, True, False]
    direct = DetectionRate(detector, score_threshold=0.5)
    direct.update(images, evaluated)
    precomputed = DetectionRate(detector, score_threshold=0.5)
    precomputed.update_detections([detector.detect(image) for image in images], evaluated)
    assert float(direct.compute()) == float(precomputed.compute()) == 0.5
