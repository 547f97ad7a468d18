"""deid.bodies: the PersonMasks contract, MediaPipe on a real photo, DeepLabV3 shapes and errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from skimage.data import astronaut
from skimage.transform import resize

from deid import weights
from deid.bodies import (
    DeepLabV3Segmenter,
    MediaPipeSelfieSegmenter,
    PersonMasks,
    PersonSegmenter,
    build_segmenter,
    instances_from_union,
)
from deid.errors import DeidError, MissingWeightError

BODY = (slice(250, 500), slice(150, 400))  # the astronaut's suit and helmet
SKY = (slice(0, 100), slice(412, 512))  # grey backdrop, top-right corner


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return astronaut()


def _check_contract(masks: PersonMasks, shape: tuple[int, int]) -> None:
    assert masks.union.shape == shape and masks.union.dtype == np.float32
    assert masks.union.min() >= 0.0 and masks.union.max() <= 1.0
    assert masks.binary.dtype == bool and masks.binary.shape == shape
    for mask in masks.instances:
        assert mask.shape == shape and mask.dtype == bool
    areas = [int(m.sum()) for m in masks.instances]
    assert areas == sorted(areas, reverse=True)


# ---------------------------------------------------------------- MediaPipe


@pytest.fixture(scope="module")
def selfie() -> MediaPipeSelfieSegmenter:
    with MediaPipeSelfieSegmenter(model_selection=0) as segmenter:
        yield segmenter


def test_mediapipe_finds_the_astronaut(selfie: MediaPipeSelfieSegmenter, rgb: np.ndarray) -> None:
    masks = selfie.segment(rgb)
    _check_contract(masks, (512, 512))
    assert masks.union[BODY].mean() > 0.8  # measured 0.93
    assert masks.union[SKY].mean() < 0.05  # measured 3e-6
    assert masks.instances_from_components and len(masks.instances) >= 1
    person = masks.instances[0]
    assert person[BODY].mean() > 0.8 and not person[SKY].any()
    assert person[100, 230]  # her face belongs to the same instance


def test_mediapipe_keeps_input_resolution(
    selfie: MediaPipeSelfieSegmenter, rgb: np.ndarray
) -> None:
    small = (resize(rgb[:, 50:], (300, 231), anti_aliasing=True) * 255).astype(np.uint8)
    masks = selfie.segment(small)
    _check_contract(masks, (300, 231))
    assert masks.union[150:290, 60:180].mean() > 0.7


def test_mediapipe_landscape_and_registry(rgb: np.ndarray) -> None:
    segmenter = build_segmenter("mediapipe_landscape", threshold=0.3)
    assert isinstance(segmenter, PersonSegmenter) and segmenter.model_selection == 1
    masks = segmenter.segment(rgb)
    assert masks.threshold == 0.3 and masks.union[BODY].mean() > 0.8
    segmenter.close()
    with pytest.raises(ValueError, match="closed"):
        segmenter.segment(rgb)
    with pytest.raises(ValueError, match="RGB uint8"):
        build_segmenter("mediapipe").segment(rgb.astype(np.float32))
    with pytest.raises(DeidError, match="unknown person segmenter 'yolo'; known: mediapipe"):
        build_segmenter("yolo")


# ---------------------------------------------------------------- DeepLabV3


@pytest.fixture(scope="module")
def random_deeplab_state() -> dict:
    import torch
    from torchvision.models.segmentation import deeplabv3_resnet50

    torch.manual_seed(0)
    model = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    return model.state_dict()


def test_deeplab_contract_with_random_weights(random_deeplab_state: dict, rgb: np.ndarray) -> None:
    segmenter = DeepLabV3Segmenter(state_dict=random_deeplab_state, device="cpu", resize_short=48)
    image = np.ascontiguousarray(rgb[::4, ::5])  # 128 x 103, not a multiple of the stride
    masks = segmenter.segment(image)
    _check_contract(masks, (128, 103))
    assert masks.instances_from_components
    prob = segmenter.person_probability(image)
    assert np.allclose(prob, masks.union)

    native = DeepLabV3Segmenter(state_dict=random_deeplab_state, device="cpu", resize_short=None)
    _check_contract(native.segment(image[:40, :56]), (40, 56))


def test_deeplab_rejects_a_wrong_state_dict(random_deeplab_state: dict) -> None:
    partial = {k: v for k, v in random_deeplab_state.items() if not k.startswith("classifier")}
    with pytest.raises(RuntimeError, match="classifier"):
        DeepLabV3Segmenter(state_dict=partial)


def test_deeplab_without_weights_says_what_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEID_HOME", str(tmp_path / "deid"))
    monkeypatch.delenv("DEID_WEIGHT_DEEPLABV3", raising=False)
    monkeypatch.delenv("DEID_ALLOW_DOWNLOAD", raising=False)
    # The torch hub folder is read when deid.weights is imported: point it away explicitly.
    spec = dataclasses.replace(weights.REGISTRY["deeplabv3"], foreign_dirs=(str(tmp_path / "hub"),))
    monkeypatch.setitem(weights.REGISTRY, "deeplabv3", spec)
    with pytest.raises(MissingWeightError) as info:
        build_segmenter("deeplabv3")
    message = str(info.value)
    assert "'deeplabv3'" in message
    assert "deeplabv3_resnet50_coco-cd0a2569.pth" in message
    assert str(tmp_path / "deid" / "weights" / "deeplabv3_resnet50_coco-cd0a2569.pth") in message
    assert "DEID_WEIGHT_DEEPLABV3" in message


# ---------------------------------------------------------------- helpers


def test_instances_from_union_drops_specks() -> None:
    binary = np.zeros((100, 100), bool)
    binary[10:40, 10:30] = True  # 600 px
    binary[60:90, 50:90] = True  # 1200 px
    binary[0, 99] = True  # a 1-pixel speck, under 0.1 % of 10,000 px
    instances = instances_from_union(binary, min_fraction=0.001)
    assert [int(m.sum()) for m in instances] == [1200, 600]
    assert instances_from_union(np.zeros((10, 10), bool)) == []


def test_person_masks_validates() -> None:
    masks = PersonMasks(union=np.full((4, 5), 1.5), threshold=0.5)
    assert masks.union.dtype == np.float32 and masks.union.max() == 1.0 and masks.shape == (4, 5)
    with pytest.raises(ValueError, match="instances"):
        PersonMasks(union=np.zeros((4, 5), np.float32), instances=[np.zeros((5, 4), bool)])


def test_a_wide_group_photo_is_segmented_as_squares(
    selfie: MediaPipeSelfieSegmenter, demo_root: Path
) -> None:
    """Three demo portraits side by side (1104x360): squeezed into one square input the model
    found 3.5% person; as overlapping squares every portrait is a person of its own."""
    from demo.scenes import group_photo

    image = group_photo(demo_root)
    masks = selfie.segment(image)
    assert masks.union.shape == image.shape[:2]
    assert len(masks.instances) == 3
    width = image.shape[1]
    for k, instance in enumerate(
        sorted(masks.instances, key=lambda m: np.argwhere(m)[:, 1].mean())
    ):
        third = instance[:, k * width // 3 : (k + 1) * width // 3]
        assert third.sum() > 0.9 * instance.sum() and instance.mean() > 0.1
