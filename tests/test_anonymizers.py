"""The Anonymizer protocol and the classic baselines: change the face, nothing else."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from deid.anonymizers.base import Anonymizer, Subject, face_region
from deid.anonymizers.registry import BASELINES, build_anonymizer
from deid.errors import DeidError
from deid.faces.types import Face

ROOT = Path(__file__).resolve().parents[1]
BOX = (175.0, 76.0, 250.0, 151.0)  # the astronaut's face
X0, Y0, X1, Y1 = face_region(Face(BOX, 1.0), (512, 512), expand=0.25)  # 165, 66, 260, 161
FACE = np.s_[Y0:Y1, X0:X1]


@pytest.fixture()
def subject(astronaut: np.ndarray) -> Subject:
    mask = np.zeros(astronaut.shape[:2], dtype=bool)
    mask[60:512, 120:420] = True
    return Subject(image=astronaut.copy(), faces=[Face(box=BOX, score=1.0)], person_mask=mask)


def _outside_box(image: np.ndarray) -> np.ndarray:
    keep = np.ones(image.shape[:2], dtype=bool)
    keep[FACE] = False
    return keep


@pytest.mark.parametrize(
    "name", ["blur", "blur9", "blur17", "blur9_px", "blur17_px", "pixel8", "pixel16", "blackbox"]
)
def test_face_baselines_touch_only_the_face_box(name: str, subject: Subject) -> None:
    anonymizer = build_anonymizer(name)
    assert isinstance(anonymizer, Anonymizer)
    (out,) = anonymizer.anonymize([subject])
    assert out.shape == subject.image.shape and out.dtype == np.uint8
    outside = _outside_box(out)
    np.testing.assert_array_equal(out[outside], subject.image[outside])
    assert np.abs(out[FACE].astype(int) - subject.image[FACE]).mean() > 2


@pytest.mark.parametrize("kernel", [9, 17])
def test_fixed_pixel_blur_equals_opencv_on_the_box(kernel: int, subject: Subject) -> None:
    (out,) = build_anonymizer(f"blur{kernel}_px").anonymize([subject])
    region = np.ascontiguousarray(subject.image[FACE])
    expected = cv2.GaussianBlur(region, (kernel, kernel), 0, borderType=cv2.BORDER_REPLICATE)
    assert (X0, Y0, X1, Y1) == (165, 66, 260, 161)
    np.testing.assert_array_equal(out[FACE], expected)


def _relative_change(name: str, image: np.ndarray, box: tuple[float, ...]) -> float:
    """Mean change inside the anonymized region, over the region's own pixel spread: how much
    of the face's structure was removed, whatever its size."""
    face = Face(box, 1.0)
    (out,) = build_anonymizer(name).anonymize([Subject(image=image, faces=[face])])
    x0, y0, x1, y1 = face_region(face, image.shape, expand=0.25)
    before = image[y0:y1, x0:x1].astype(float)
    return float(np.abs(out[y0:y1, x0:x1] - before).mean() / before.std())


@pytest.mark.parametrize("name", ["blur", "blur9", "blur17", "pixel8", "pixel16"])
def test_strength_scales_with_the_face(name: str, astronaut: np.ndarray) -> None:
    """The astronaut's face upscaled 6x (a ~450 px face) loses as much of its structure as
    at its own size; the fixed-pixel blur of the paper barely touches the large face."""
    big = cv2.resize(astronaut, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)
    small = _relative_change(name, astronaut, BOX)
    large = _relative_change(name, big, tuple(6 * v for v in BOX))
    assert large == pytest.approx(small, rel=0.25)
    if name == "blur17":
        fixed = _relative_change("blur17_px", big, tuple(6 * v for v in BOX))
        assert fixed < 0.5 * large


def test_scaled_blur_at_the_reference_size_is_the_paper_kernel(astronaut: np.ndarray) -> None:
    """At a 128 px face blur17 is (up to the shrunk-copy approximation) the 17x17 kernel."""
    box = (160.0, 60.0, 288.0, 188.0)  # 128 px
    subject = Subject(image=astronaut, faces=[Face(box, 1.0)])
    (scaled,) = build_anonymizer("blur17").anonymize([subject])
    (fixed,) = build_anonymizer("blur17_px").anonymize([subject])
    assert np.abs(scaled.astype(int) - fixed).mean() < 1.0


@pytest.mark.parametrize("cells", [8, 16])
def test_pixelation_leaves_cells_by_cells_blocks(cells: int, subject: Subject) -> None:
    (out,) = build_anonymizer(f"pixel{cells}").anonymize([subject])
    region = out[FACE].reshape(-1, 3)
    assert len(np.unique(region, axis=0)) <= cells * cells


def test_blackbox_is_black_and_maskout_fills_the_silhouette(subject: Subject) -> None:
    (boxed,) = build_anonymizer("blackbox").anonymize([subject])
    assert not boxed[FACE].any()
    (masked,) = build_anonymizer("maskout").anonymize([subject])
    assert not masked[subject.person_mask].any()
    np.testing.assert_array_equal(masked[~subject.person_mask], subject.image[~subject.person_mask])


def test_original_is_unchanged_and_a_copy(subject: Subject) -> None:
    (out,) = build_anonymizer("original").anonymize([subject], seeds=[3])
    np.testing.assert_array_equal(out, subject.image)
    assert out is not subject.image


def test_batched_equals_one_by_one(subject: Subject, astronaut: np.ndarray) -> None:
    other = Subject(image=np.ascontiguousarray(astronaut[::-1]), faces=[Face((10, 20, 90, 120), 1)])
    anonymizer = build_anonymizer("pixel16")
    batch = anonymizer.anonymize([subject, other])
    singles = [anonymizer.anonymize([s])[0] for s in (subject, other)]
    for a, b in zip(batch, singles, strict=True):
        np.testing.assert_array_equal(a, b)


def test_expand_zero_is_the_bare_box(subject: Subject) -> None:
    (out,) = build_anonymizer("blackbox", expand=0.0).anonymize([subject])
    assert not out[76:151, 175:250].any()
    assert out[75, 175:250].any() and out[76:151, 250].any()


def test_faces_outside_the_image_and_partial_boxes(astronaut: np.ndarray) -> None:
    faces = [Face((-30, -30, 40, 40), 1.0), Face((600, 600, 700, 700), 1.0)]
    (out,) = build_anonymizer("blackbox", expand=0.0).anonymize([Subject(astronaut.copy(), faces)])
    assert not out[:40, :40].any()
    np.testing.assert_array_equal(out[40:], astronaut[40:])


def test_missing_person_mask_fails_loudly(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="person mask"):
        build_anonymizer("maskout").anonymize([Subject(astronaut.copy())])


def test_unknown_anonymizer_lists_known_ones() -> None:
    with pytest.raises(DeidError, match="blur9"):
        build_anonymizer("blur99")


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_config_instantiates(name: str) -> None:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[f"model={name}"])
    anonymizer = instantiate(cfg.model)
    assert anonymizer.name == name
