"""The full-body CIAGAN: body preprocessing on real photos (MediaPipe masks) and on a tiny MOTS
set, silhouette items, a short training run, and the body anonymizer from its checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from ciagan_tiny import TINY_GAN
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ciagan.body_anonymizer import CiaganBodyAnonymizer, crop_settings
from ciagan.body_data import BodyImages, BodyTriplets
from ciagan.data import AugmentConfig
from deid.anonymizers.base import Subject
from deid.bodies import build_segmenter
from deid.bodies.persons import mask_box, person_components
from deid.faces import build_detector
from deid.faces.align import paste_back
from deid.media import read_image, write_image
from deid.prep.bodies import preprocess_bodies, read_body_failures, read_body_manifest, read_mask
from deid.training import build

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = ("ben_afflek", "madonna", "mindy_kaling")


def _preprocess_cfg(data: dict, out: Path, **extra) -> OmegaConf:
    cfg = {
        "data": data,
        "out": str(out),
        "segmenter": "mediapipe",
        "workers": 1,
        "crop": {"size": 256, "margin": 0.1},
        **extra,
    }
    return OmegaConf.create(cfg)


@pytest.fixture(scope="module")
def photos(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-layout root: 3 people x (2 train + 1 val) real photos, and a flat grey image."""
    root = tmp_path_factory.mktemp("demo_bodies")
    for split, count in (("train", 2), ("val", 1)):
        for name in PEOPLE:
            (root / split / name).mkdir(parents=True)
            for photo in sorted((demo_root / split / name).glob("*.jpg"))[:count]:
                shutil.copy(photo, root / split / name / photo.name)
    write_image(root / "train" / "madonna" / "grey.png", np.full((200, 160, 3), 128, np.uint8))
    (root / ".complete").write_text("test fixture\n")
    return root


@pytest.fixture(scope="module")
def preprocessed(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bodies_out")
    summary = preprocess_bodies(_preprocess_cfg({"name": "demo", "root": str(photos)}, out))
    assert summary["persons"] == 9 and summary["failures"] == {"no_person": 1}
    return out


def test_every_photo_gives_one_person_and_the_grey_image_a_failure(preprocessed: Path) -> None:
    entries = read_body_manifest(preprocessed)
    assert len(entries) == 9 and {e.identity for e in entries} == set(PEOPLE)
    assert sorted({e.split for e in entries}) == ["train", "val"]
    (failure,) = read_body_failures(preprocessed)
    assert failure["source"] == "train/madonna/grey.png" and failure["reason"] == "no_person"
    assert failure["identity"] == "madonna" and failure["split"] == "train"


def test_the_mask_covers_the_person_and_pastes_back_within_a_pixel(
    photos: Path, preprocessed: Path
) -> None:
    detector = build_detector("dlib_hog")
    for entry in read_body_manifest(preprocessed):
        source = read_image(photos / entry.source)
        crop = read_image(preprocessed / entry.crop)
        mask = read_mask(str(preprocessed / entry.mask))
        assert crop.shape == (256, 256, 3) and mask.shape == (256, 256)
        assert 0.15 < (mask > 0).mean() < 0.95
        # the mask pasted back into the photo: the person's box to within 1 px, and it
        # covers the face dlib finds there
        back = paste_back(np.zeros(source.shape[:2], np.uint8), mask, entry.transform)
        assert np.abs(np.array(mask_box(back > 127)) - np.array(entry.box)).max() <= 1
        for face in detector.detect(source)[:1]:  # the inner half of the face box
            (cx, cy), w, h = face.center, face.width / 4, face.height / 4
            inner = back[max(int(cy - h), 0) : int(cy + h), max(int(cx - w), 0) : int(cx + w)]
            covered = (inner > 127).mean()
            assert covered > 0.9, f"{entry.source}: the mask misses the face ({covered:.2f})"
        # the crop pasted straight back reproduces the photo under it
        restored = paste_back(source, crop, entry.transform)
        assert np.abs(restored.astype(int) - source).mean() < 4.0


def test_a_second_run_resumes_and_skips_everything(photos: Path, preprocessed: Path) -> None:
    summary = preprocess_bodies(
        _preprocess_cfg({"name": "demo", "root": str(photos)}, preprocessed)
    )
    assert summary["done"] == 0 and summary["skipped_already_done"] == 10
    assert summary["persons"] == 9


def test_mots_masks_and_track_identities(tiny_mots_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "mots"
    data = {"name": "mots", "root": str(tiny_mots_root), "split": "train"}
    summary = preprocess_bodies(_preprocess_cfg(data, out, min_area=500))
    assert summary["persons"] == 12 and summary["failures"] == {}  # car + ignore region skipped
    entries = read_body_manifest(out)
    assert {e.identity for e in entries} == {"0000/2001", "0000/2002", "0001/2001", "0001/2002"}
    assert sorted({e.person for e in entries}) == [2001, 2002]
    # a pedestrian's crop mask is its own mask, not its neighbour's
    frame = read_image(tiny_mots_root / "train" / "images" / "0000" / "000000.jpg")
    for entry in entries[:2]:
        mask = read_mask(str(out / entry.mask))
        back = paste_back(np.zeros(frame.shape[:2], np.uint8), mask, entry.transform) > 127
        x0, _, x1, _ = entry.box
        assert back[:, x0:x1].sum() > 0.97 * back.sum()
    # persons below min_area: a failure row each, the other persons of their frames kept
    median = sorted(e.area for e in entries)[6]
    strict = preprocess_bodies(_preprocess_cfg(data, tmp_path / "strict", min_area=median))
    assert strict["failures"] == {"too_small": 6} and strict["persons"] == 6


def test_items_have_the_silhouette_aligned_with_the_mask(preprocessed: Path) -> None:
    entries = read_body_manifest(preprocessed)
    train = [e for e in entries if e.split == "train"]
    dataset = BodyTriplets(train, preprocessed, image_size=48, augment=AugmentConfig(rotate=10))
    for key in [(0, 7), (3, 11), (5, 12345)]:
        item = dataset[key]
        assert item["image"].shape == (3, 48, 48) and item["mask"].shape == (1, 48, 48)
        assert torch.equal(item["pose"], item["mask"].expand(3, -1, -1))
        assert 0.1 < float(item["mask"].mean()) < 0.95
        assert item["label"] != item["target_label"]  # target_rule=different
    plain = dataset.load(0)
    assert np.array_equal(plain["pose"][..., 0], plain["mask"])
    single = BodyImages(train, preprocessed, image_size=48)[(2, 5)]  # identity pre-training
    assert set(single) == {"image", "label", "index"} and single["image"].shape == (3, 48, 48)


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture(scope="module")
def checkpoint(photos: Path, preprocessed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two CIAGAN iterations on the body crops (tiny nets), saved as a checkpoint."""
    run = tmp_path_factory.mktemp("body_run")
    cfg = _compose(
        [
            "experiment=ciagan_body_demo",
            *TINY_GAN,
            "trainer.max_steps=6",  # 2 iterations x 3 optimizer steps
            "logger=csv",
            "callbacks.sample_grids.every_n_iterations=0",
            f"data.root={photos}",
            f"datamodule.manifest_dir={preprocessed}",
            f"paths.output_dir={run}",
        ]
    )
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    assert module.iteration == 2
    assert all(np.isfinite(float(v)) for v in module.last_logs.values())
    assert list((run / "samples").glob("*.png"))  # source | silhouette | outputs
    assert crop_settings(torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)) == {
        "crop_size": 256,
        "margin": 0.1,
    }
    path = run / "body.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


@pytest.fixture(scope="module")
def two_people(demo_root: Path) -> Subject:
    """Two real photos side by side with a grey gap; MediaPipe person mask; dlib faces."""
    photos = [
        read_image(sorted((demo_root / "val" / name).glob("*.jpg"))[0])
        for name in ("madonna", "elton_john")
    ]
    photos = [cv2.resize(p, (240, 300), interpolation=cv2.INTER_AREA) for p in photos]
    image = np.concatenate([photos[0], np.full((300, 160, 3), 90, np.uint8), photos[1]], axis=1)
    with build_segmenter("mediapipe") as segmenter:
        mask = np.concatenate(
            [
                segmenter.segment(photos[0]).union,
                np.zeros((300, 160)),
                segmenter.segment(photos[1]).union,
            ],
            axis=1,
        ).astype(np.float32)
    faces = sorted(build_detector("dlib_hog").detect(image), key=lambda f: f.box[0])
    assert len(faces) == 2
    return Subject(image=image, faces=faces, person_mask=mask)


def test_body_anonymizer_replaces_persons_and_nothing_else(
    checkpoint: Path, two_people: Subject
) -> None:
    anonymizer = CiaganBodyAnonymizer.from_checkpoint(checkpoint, device="cpu", dilate=2)
    assert anonymizer.crop_size == 256 and anonymizer.image_size == 32
    (output,) = anonymizer.anonymize([two_people], seeds=[0])
    image = two_people.image
    assert output.shape == image.shape and output.dtype == np.uint8
    changed = np.abs(output.astype(int) - image).max(axis=2) > 0
    persons = anonymizer.persons(two_people.person_mask)
    assert len(persons) == 2
    for person in persons:
        assert changed[person].mean() > 0.5, "a person was not replaced"
    region = np.any(persons, axis=0)  # the person mask grown by `dilate`
    assert not changed[~region].any(), "pixels outside the person masks changed"
    assert not changed[:, 242:398].any()  # the grey gap (masks touching it grow by 2 px)


def test_body_identity_control(checkpoint: Path, two_people: Subject) -> None:
    anonymizer = CiaganBodyAnonymizer.from_checkpoint(checkpoint, device="cpu")
    a, b = anonymizer.anonymize([two_people, two_people], seeds=[4, 4])
    assert np.array_equal(a, b)  # same seed, same fake identities
    fixed = CiaganBodyAnonymizer.from_checkpoint(checkpoint, device="cpu", identity=1)
    (c,) = fixed.anonymize([two_people], seeds=[1])
    assert np.array_equal(c, fixed.anonymize([two_people], seeds=[2])[0])  # identity=N wins
    other = CiaganBodyAnonymizer.from_checkpoint(checkpoint, device="cpu", identity=2)
    assert not np.array_equal(c, other.anonymize([two_people], seeds=[1])[0])
    # identities aligned with the faces: each person takes its face's identity
    by_face = Subject(two_people.image, two_people.faces, two_people.person_mask, [1, 2])
    (mixed,) = anonymizer.anonymize([by_face], seeds=[9])
    left, right = slice(0, 240), slice(400, 640)
    assert np.array_equal(mixed[:, left], c[:, left])
    e = other.anonymize([two_people], seeds=[1])[0]
    assert np.array_equal(mixed[:, right], e[:, right])
    # without faces: one identity per person, left to right
    by_person = Subject(two_people.image, [], two_people.person_mask, [1, 2])
    assert np.array_equal(anonymizer.anonymize([by_person], seeds=[9])[0], mixed)
    with pytest.raises(ValueError, match="3 identities for 2 faces"):
        anonymizer.anonymize(
            [Subject(two_people.image, two_people.faces, two_people.person_mask, [1, 2, 0])]
        )


def test_person_components_are_ordered_left_to_right_and_filtered() -> None:
    mask = np.zeros((50, 100), bool)
    mask[10:40, 60:90] = True  # right, large
    mask[5:15, 5:15] = True  # left, small
    mask[45:47, 40:42] = True  # 4 px: noise
    parts = person_components(mask, min_area=50)
    assert [mask_box(p) for p in parts] == [(5, 5, 15, 15), (60, 10, 90, 40)]


def test_body_experiments_compose() -> None:
    mots = _compose(["experiment=ciagan_body_mots"])
    assert mots.data.name == "mots" and mots.datamodule.kind == "bodies"
    assert mots.datamodule.image_size == 128 and mots.module.condition == "pose"
    assert mots.module.optimizer.lr == 1e-5
    demo = _compose(["experiment=ciagan_body_demo"])
    assert demo.datamodule.image_size == 64 and demo.datamodule.preprocess.segmenter == "mediapipe"
