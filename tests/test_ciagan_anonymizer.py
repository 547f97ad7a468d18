"""CIAGAN as an Anonymizer: checkpoint in, every face replaced and pasted back, the rest of the
frame untouched; identity control; clear errors for bad checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ciagan_tiny import PLAIN_CIAGAN, TINY_GAN
from hydra import compose, initialize_config_dir

from ciagan.anonymizer import CiaganAnonymizer
from ciagan.nets import Generator
from deid.anonymizers.base import Subject
from deid.errors import DeidError, MissingWeightError
from deid.faces import LandmarkPredictor, build_detector
from deid.media import read_image
from deid.training import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_faces(demo_root: Path) -> Subject:
    """Two real demo faces side by side, with dlib HOG boxes and 68 landmarks each."""
    import cv2

    photos = [
        read_image(sorted((demo_root / "val" / name).glob("*.jpg"))[0])
        for name in ("madonna", "elton_john")
    ]
    photos = [cv2.resize(p, (300, 300), interpolation=cv2.INTER_AREA) for p in photos]
    image = np.concatenate([photos[0], np.full((300, 200, 3), 90, np.uint8), photos[1]], axis=1)
    faces = LandmarkPredictor().add_landmarks(image, build_detector("dlib_hog").detect(image))
    assert len(faces) == 2
    return Subject(image=image, faces=faces)


def _anonymizer(**options) -> CiaganAnonymizer:
    torch.manual_seed(0)
    generator = Generator(
        7,
        image_size=32,
        channels=(8, 16, 16),
        up_channels=(16, 8, 8),
        bottleneck_channels=16,
        num_res_blocks=1,
        id_hidden=(32, 32),
        id_channels=(8, 16),
    )
    return CiaganAnonymizer(generator, device="cpu", **options)


def test_every_face_is_replaced_and_far_pixels_are_unchanged(two_faces: Subject) -> None:
    (output,) = _anonymizer().anonymize([two_faces], seeds=[0])
    image = two_faces.image
    assert output.shape == image.shape and output.dtype == np.uint8
    changed = np.abs(output.astype(int) - image).max(axis=2) > 0
    for face in two_faces.faces:
        x0, y0, x1, y1 = (int(v) for v in face.box)
        assert changed[y0:y1, x0:x1].mean() > 0.5, "a face was not replaced"
    near = np.zeros_like(changed)
    for face in two_faces.faces:
        x0, y0, x1, y1 = (int(v) for v in face.box)
        w, h = x1 - x0, y1 - y0
        near[max(0, y0 - h) : y1 + h, max(0, x0 - w) : x1 + w] = True
    assert not changed[~near].any(), "pixels far from every face changed"
    assert not changed[:, 300:500].any()  # the grey gap between the photos


def test_identity_control(two_faces: Subject) -> None:
    anonymizer = _anonymizer()
    a, b = anonymizer.anonymize([two_faces, two_faces], seeds=[1, 1])
    assert np.array_equal(a, b)  # same seed, same fake identities
    fixed = _anonymizer(identity=3)
    c, d = fixed.anonymize([two_faces, two_faces], seeds=[1, 2])
    assert np.array_equal(c, d)  # identity=N overrides the seed
    e = _anonymizer(identity=5).anonymize([two_faces], seeds=[1])[0]
    assert not np.array_equal(c, e)  # another identity, another face
    with pytest.raises(DeidError, match="out of range"):
        _anonymizer(identity=7)


def test_from_checkpoint_rebuilds_the_trained_generator(
    tiny_data_dir: Path, tmp_path: Path, two_faces: Subject
) -> None:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                *PLAIN_CIAGAN,
                *TINY_GAN,
                "logger=csv",
                "trainer.max_steps=3",
                "callbacks.sample_grids.every_n_iterations=0",
                f"paths.data_dir={tiny_data_dir}",
                f"paths.output_dir={tmp_path}",
            ],
        )
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    anonymizer = CiaganAnonymizer.from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert anonymizer.num_identities == module.hparams.num_identities
    for name, value in module.generator.state_dict().items():
        assert torch.equal(anonymizer.generator.state_dict()[name], value), name
    output = anonymizer.anonymize([two_faces], seeds=[0])[0]
    assert not np.array_equal(output, two_faces.image)


def test_bad_checkpoints_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(DeidError, match="needs a checkpoint"):
        CiaganAnonymizer.from_checkpoint(None)
    with pytest.raises(MissingWeightError, match="not found"):
        CiaganAnonymizer.from_checkpoint(tmp_path / "missing.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DeidError, match="not a loadable CIAGAN checkpoint"):
        CiaganAnonymizer.from_checkpoint(garbage)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, other)
    with pytest.raises(DeidError, match="not a CIAGAN GAN checkpoint"):
        CiaganAnonymizer.from_checkpoint(other)


def test_faces_without_landmarks_are_refused(two_faces: Subject) -> None:
    bare = Subject(two_faces.image, [f.with_landmarks(None) for f in two_faces.faces])
    with pytest.raises(ValueError, match="landmarks"):
        _anonymizer().anonymize([bare])


def test_bf16_inference_stays_close_to_fp32(two_faces: Subject) -> None:
    """precision=bf16 (auto picks it on CPUs with native bf16) changes the generated faces by
    a few grey levels, nothing else."""
    (fp32,) = _anonymizer(precision="fp32").anonymize([two_faces], seeds=[0])
    (bf16,) = _anonymizer(precision="bf16").anonymize([two_faces], seeds=[0])
    difference = np.abs(fp32.astype(int) - bf16)
    assert difference.mean() < 2.0 and difference.max() < 64
    with pytest.raises(DeidError, match="precision must be"):
        _anonymizer(precision="fp16")


def test_traced_generator_gives_the_eager_faces(two_faces: Subject) -> None:
    """The frozen TorchScript copy (the CPU default from a checkpoint) paints the same faces as
    the module: equal in fp32 up to float rounding, for a batch of 2 and then of 1 (one trace
    serves every batch size); under bf16 as close to the eager bf16 output as bf16 allows."""
    single = Subject(two_faces.image, two_faces.faces[:1])
    for precision, tolerance in (("fp32", 1), ("bf16", 24)):
        eager = _anonymizer(precision=precision, trace=False)
        traced = _anonymizer(precision=precision, trace=True)
        for subject in (two_faces, single):
            (want,) = eager.anonymize([subject], seeds=[0])
            (got,) = traced.anonymize([subject], seeds=[0])
            difference = np.abs(want.astype(int) - got)
            assert difference.max() <= tolerance and difference.mean() < 0.5
        assert traced.network._graph is not None  # it really ran the traced graph
    assert isinstance(_anonymizer().network, Generator)  # off unless asked (or from_checkpoint)
