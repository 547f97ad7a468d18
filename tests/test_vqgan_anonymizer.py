"""The VQGAN full-body pipeline on real photos with tiny random-weight models: it replaces the
(grown) person mask entirely with synthesis from the silhouette alone, leaves every pixel beyond
the feathered band bit-identical, blurs faces inside the synthetic person, falls back (and says
so) where it cannot synthesize, keeps persons apart, and draws reproducible seeds."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_vqgan_convert import official, taming  # noqa: F401 (fixtures: a taming checkpoint)
from vqgan_anonymizer_tiny import save_tiny, side_by_side, tiny_bundle

from deid.anonymizers.base import Subject
from deid.anonymizers.frame import FrameAnonymizer
from deid.bodies import build_segmenter
from deid.bodies.persons import context_crop, grow_mask, mask_box, person_alpha
from deid.errors import DeidError, MissingWeightError
from deid.faces import Face, build_detector
from deid.media import read_image, write_image
from vqgan import load_checkpoint
from vqgan.anonymizer import VqganAnonymizer, derived_seed
from vqgan.convert_official import main as convert_official

DILATE, FEATHER = 3, 4.0


def _anonymizer(labels: int = 2, **options) -> VqganAnonymizer:
    options = {"face_detector": None, "device": "cpu", **options}
    return VqganAnonymizer(load_checkpoint(tiny_bundle(labels)), **options)


@pytest.fixture(scope="module")
def anonymizer() -> VqganAnonymizer:
    return _anonymizer(dilate=DILATE, feather=FEATHER)


@pytest.fixture(scope="module")
def astronaut_subject(astronaut: np.ndarray) -> Subject:
    """The astronaut with MediaPipe's person mask (soft) and dlib HOG's face."""
    with build_segmenter("mediapipe") as segmenter:
        mask = segmenter.segment(astronaut).union
    faces = [f for f in build_detector("dlib_hog").detect(astronaut) if f.box[1] < 200]
    assert len(faces) == 1
    return Subject(image=np.array(astronaut), faces=faces, person_mask=mask)


@pytest.fixture(scope="module")
def two_people(demo_root: Path) -> Subject:
    """Madonna and Elton John side by side (grey gap), MediaPipe's union mask, dlib HOG faces."""
    photos = [
        read_image(sorted((demo_root / "val" / name).glob("*.jpg"))[0])
        for name in ("madonna", "elton_john")
    ]
    image = side_by_side(photos, (200, 260), gap=120)
    with build_segmenter("mediapipe") as segmenter:
        mask = segmenter.segment(image).binary
    faces = sorted(build_detector("dlib_hog").detect(image), key=lambda f: f.box[0])
    assert len(faces) == 2
    return Subject(image=image, faces=faces, person_mask=mask)


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(axis=2)


# ---------------------------------------------------------------- geometry
def test_context_crop_keeps_the_aspect_and_the_latent_cell() -> None:
    tall = context_crop((100, 50, 140, 250), 32, multiple=4, margin=0.1, max_aspect=2.0)
    assert tall.size == (32, 64)  # 2:1 at most: the narrow person gets context at the sides
    left, top, right, bottom = tall.source_rect()
    assert (right - left) / (bottom - top) == pytest.approx(32 / 64)
    assert left <= 100 and right >= 140 and top <= 30 and bottom >= 270  # box + 10% margin
    square = context_crop((0, 0, 50, 40), 32, multiple=4, margin=0.0, min_pad=5)
    assert square.size == (40, 32) and square.source_rect()[0] <= -5
    assert context_crop((0, 0, 10, 10), 256, multiple=16).size == (256, 256)


def test_alpha_is_one_on_the_grown_mask_and_zero_beyond_the_band() -> None:
    person = np.zeros((60, 80), bool)
    person[20:40, 30:50] = True
    (x0, y0, x1, y1), alpha = person_alpha(person, DILATE, FEATHER)
    full = np.zeros(person.shape, np.float32)
    full[y0:y1, x0:x1] = alpha
    assert (full[grow_mask(person, DILATE)] == 1).all()
    assert (full[~grow_mask(person, DILATE + math.ceil(FEATHER) + 1)] == 0).all()
    assert ((full > 0) & (full < 1)).any()  # a feathered band exists


# ---------------------------------------------------------------- the pipeline on a photo
def test_person_is_synthesized_and_everything_beyond_the_band_is_bit_identical(
    anonymizer: VqganAnonymizer, astronaut_subject: Subject, tmp_path: Path
) -> None:
    subject = astronaut_subject
    (output,) = anonymizer.anonymize([subject], seeds=[3])
    assert anonymizer.last_fallbacks == [[]]
    image = subject.image
    mask = subject.person_mask >= 0.5
    core = grow_mask(mask, DILATE)
    band = grow_mask(mask, DILATE + math.ceil(FEATHER) + 1)
    path = write_image(tmp_path / "out.png", output)
    written = read_image(path)
    assert np.array_equal(written, output)
    assert np.array_equal(written[~band], image[~band])  # PNG: bit-identical beyond the band
    assert _changed(written, image)[core].mean() > 0.95
    # nothing of the original person survives: other pixels under the mask, same output there
    noise = np.random.default_rng(0).integers(0, 256, image.shape, dtype=np.uint8)
    scrambled = np.where(core[..., None], noise, image)
    (again,) = anonymizer.anonymize(
        [Subject(scrambled, subject.faces, subject.person_mask)], seeds=[3]
    )
    assert np.array_equal(again[core], output[core])


def test_faces_are_blurred_inside_the_synthetic_person(astronaut_subject: Subject) -> None:
    subject = astronaut_subject
    anonymizer = _anonymizer(crop_size=64)
    (face,) = subject.faces
    (plan,) = anonymizer.plan(0, subject, 5)
    anonymizer.synthesize([plan])
    crop = plan.crop
    blurred = anonymizer.blur_faces(crop, plan.transform, [face], subject.image.shape)
    inside = _changed(blurred, crop)
    ys, xs = np.nonzero(inside)
    corners = plan.transform.apply(np.array(face.box).reshape(2, 2))
    assert inside.any() and not inside[: max(0, int(corners[:, 1].min()) - 6)].any()
    region = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    sharp = cv2.Laplacian(crop[region].astype(np.float32), cv2.CV_32F).var()
    soft = cv2.Laplacian(blurred[region].astype(np.float32), cv2.CV_32F).var()
    assert soft < 0.5 * sharp
    # end to end: with the face, only the face's surroundings differ from a run without it
    (with_face,) = anonymizer.anonymize([subject], seeds=[5])
    (without,) = anonymizer.anonymize([Subject(subject.image, [], subject.person_mask)], seeds=[5])
    differ = _changed(with_face, without)
    x0, y0, x1, y1 = face.box
    grow = 0.25 * max(x1 - x0, y1 - y0) + 16  # the 25% expansion + resampling support
    ys, xs = np.nonzero(differ)
    assert differ.any()
    assert xs.min() >= x0 - grow and xs.max() <= x1 + grow
    assert ys.min() >= y0 - grow and ys.max() <= y1 + grow


def test_the_papers_face_detector_runs_on_the_original(demo_root: Path) -> None:
    """dlib CNN (the default) finds the face on the original; it is blurred like a given one."""
    photo = read_image(sorted((demo_root / "val" / "madonna").glob("*.jpg"))[0])
    photo = cv2.resize(photo, (200, 260), interpolation=cv2.INTER_AREA)
    with build_segmenter("mediapipe") as segmenter:
        mask = segmenter.segment(photo).binary
    subject = Subject(photo, [], mask)
    detecting = _anonymizer(face_detector="dlib_cnn", crop_size=64)
    found = detecting.detected_faces(photo)
    assert len(found) == 1
    given = _anonymizer(crop_size=64).anonymize([Subject(photo, found, mask)], seeds=[1])
    assert np.array_equal(detecting.anonymize([subject], seeds=[1])[0], given[0])
    plain = _anonymizer(crop_size=64).anonymize([subject], seeds=[1])
    assert not np.array_equal(plain[0], given[0])


# ---------------------------------------------------------------- persons and fallbacks
def test_two_people_are_two_persons_and_the_gap_stays(
    anonymizer: VqganAnonymizer, two_people: Subject
) -> None:
    plans = anonymizer.plan(0, two_people, 0)
    assert len(anonymizer.person_masks(two_people)) > 2  # MediaPipe leaves fragments ...
    assert len(plans) == 2 and all(p.reason is None for p in plans)  # ... that join a person
    persons = [p.mask for p in plans]
    assert mask_box(persons[0])[2] <= 205 and mask_box(persons[1])[0] >= 315
    (output,) = anonymizer.anonymize([two_people], seeds=[0])
    changed = _changed(output, two_people.image)
    for person in persons:
        assert changed[person].mean() > 0.95
    band = grow_mask(np.any(persons, axis=0), DILATE + math.ceil(FEATHER) + 1)
    assert not changed[~band].any() and not changed[:, 215:305].any()  # the gap stays
    # instances given by a dataset stay apart even where they touch
    touching = np.zeros((120, 160), bool)
    left, right = touching.copy(), touching.copy()
    left[20:100, 30:80], right[20:100, 80:130] = True, True
    image = np.full((120, 160, 3), 128, np.uint8)
    merged = Subject(image, [], left | right)
    assert len(anonymizer.person_masks(merged)) == 1
    apart = Subject(image, [], left | right, person_instances=[left, right])
    assert len(anonymizer.person_masks(apart)) == 2
    assert len(anonymizer.plan(0, apart, 0)) == 2


def test_small_masks_fall_back_and_are_counted(
    anonymizer: VqganAnonymizer, astronaut_subject: Subject
) -> None:
    image = astronaut_subject.image
    speck = np.zeros(image.shape[:2], bool)
    speck[10:18, 250:258] = True  # 64 px, far from anyone: too small to synthesize
    frames = FrameAnonymizer(anonymizer)
    result = frames(image, [], person_mask=speck, seed=0)
    assert result.image[10:18, 250:258].max() == 0  # masked out
    assert result.fallbacks == []  # no face fell back: the method covered the speck itself
    assert result.method_fallbacks == [
        "vqgan could not synthesize a person (person mask too small): maskout"
    ]
    beyond = ~grow_mask(speck, DILATE + math.ceil(FEATHER) + 1)
    assert np.array_equal(result.image[beyond], image[beyond])
    # a speck inside a person's crop goes with that person; the person is synthesized
    near = astronaut_subject.person_mask >= 0.5
    near[300:306, 470:476] = True
    plans = anonymizer.plan(0, Subject(image, [], near), 0)
    assert len(plans) == 1 and plans[0].reason is None and plans[0].mask[300:306, 470:476].all()
    # an empty mask: nothing to synthesize, the face it misses falls back (the frame's rule)
    face = Face((170.0, 70.0, 260.0, 165.0), 1.0)
    empty = frames(image, [face], person_mask=np.zeros(image.shape[:2], bool), seed=0)
    assert empty.fallbacks == ["the person mask misses this face"]
    assert empty.anonymized == 0 and not np.array_equal(
        empty.image[70:165, 170:260], image[70:165, 170:260]
    )


def test_a_sampling_error_falls_back_for_that_person(
    astronaut_subject: Subject, monkeypatch: pytest.MonkeyPatch
) -> None:
    anonymizer = _anonymizer(fallback="blur")

    def broken(persons, seeds):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(anonymizer.synthesizer, "_sample", broken)
    (output,) = anonymizer.anonymize([astronaut_subject], seeds=[0])
    assert anonymizer.last_fallbacks == [
        ["vqgan could not synthesize a person (sampling failed: RuntimeError: out of memory): blur"]
    ]
    assert anonymizer.totals["fallbacks"] == 1 and anonymizer.totals["synthesized"] == 0
    mask = astronaut_subject.person_mask >= 0.5
    assert _changed(output, astronaut_subject.image)[mask].mean() > 0.9

    # the report belongs to the thread that made the call (video frames run on several)
    import threading

    seen: list[list[list[str]]] = []
    worker = threading.Thread(target=lambda: seen.append(anonymizer.last_fallbacks))
    worker.start()
    worker.join()
    assert seen == [[]] and len(anonymizer.last_fallbacks[0]) == 1


# ---------------------------------------------------------------- seeds
def test_seeds_reproduce_and_identities_pick_them(
    anonymizer: VqganAnonymizer, two_people: Subject
) -> None:
    first = anonymizer.anonymize([two_people], seeds=[7])[0]
    assert np.array_equal(first, anonymizer.anonymize([two_people], seeds=[7])[0])
    assert not np.array_equal(first, anonymizer.anonymize([two_people], seeds=[8])[0])
    # a person's seed is the identity of the face inside it (what keys and tracks give)
    plans = anonymizer.plan(
        0, Subject(two_people.image, two_people.faces, two_people.person_mask, [11, 12]), 7
    )
    assert [p.seed for p in plans] == [11, 12]
    keyed = Subject(two_people.image, two_people.faces, two_people.person_mask, [11, 99])
    (out,) = anonymizer.anonymize([keyed], seeds=[0])
    (ref,) = anonymizer.anonymize(
        [Subject(*[getattr(keyed, n) for n in ("image", "faces", "person_mask")], [11, 12])],
        seeds=[123],
    )
    assert np.array_equal(out[:, :200], ref[:, :200])  # same identity, same left person
    assert not np.array_equal(out[:, 320:], ref[:, 320:])  # other identity, other person
    # without a face: derived from the image's seed and the person's index
    faceless = anonymizer.plan(0, Subject(two_people.image, [], two_people.person_mask), 7)
    assert [p.seed for p in faceless] == [derived_seed(7, 0), derived_seed(7, 1)]


# ---------------------------------------------------------------- models and checkpoints
def test_a_coco_stuff_condition_stage_gets_person_1_and_unlabeled_0(
    astronaut_subject: Subject,
) -> None:
    anonymizer = _anonymizer(labels=183)
    person = np.zeros((8, 8), bool)
    person[2:6, 3:5] = True
    onehot = anonymizer.synthesizer.condition(person)
    assert onehot.shape == (183, 8, 8)
    assert torch.equal(onehot.argmax(0), torch.from_numpy(person.astype(np.int64)))
    (output,) = anonymizer.anonymize([astronaut_subject], seeds=[0])
    assert anonymizer.last_fallbacks == [[]]
    with pytest.raises(DeidError, match="person label 2 is out of range"):
        _anonymizer(labels=2, person_label=2)


def test_from_checkpoint_reads_bundles_and_lightning_files(tmp_path: Path) -> None:
    path = save_tiny(tmp_path / "tiny.pt")
    assert VqganAnonymizer.from_checkpoint(path, device="cpu").name == "vqgan"
    lightning = tmp_path / "last.ckpt"
    torch.save(
        {"deid_config": {"task_name": "vqgan_demo_transformer"}, "deid_vqgan": tiny_bundle()},
        lightning,
    )
    anonymizer = VqganAnonymizer.from_checkpoint(lightning, device="cpu", top_k=5)
    assert anonymizer.name == "vqgan_demo_transformer" and anonymizer.crop_size == 32
    bundle = tiny_bundle()
    bundle["transformer"] = None
    torch.save(bundle, tmp_path / "first.pt")
    with pytest.raises(DeidError, match="missing transformer"):
        VqganAnonymizer.from_checkpoint(tmp_path / "first.pt")
    with pytest.raises(MissingWeightError, match="experiment=vqgan_demo_transformer"):
        VqganAnonymizer.from_checkpoint(tmp_path / "nothing.ckpt")
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DeidError, match="convert_official"):
        VqganAnonymizer.from_checkpoint(tmp_path / "garbage.ckpt")
    with pytest.raises(DeidError, match="multiple of 4"):
        VqganAnonymizer.from_checkpoint(path, crop_size=30)


def test_a_converted_official_checkpoint_runs_the_pipeline(
    official,  # noqa: F811
    astronaut_subject: Subject,
    tmp_path: Path,
) -> None:
    """taming's layout (its own modules' weights, 5 labels), converted, then the pipeline."""
    out = tmp_path / "coco.pt"
    assert (
        convert_official([str(official.ckpt), "--config", str(official.config), "-o", str(out)])
        == 0
    )
    anonymizer = VqganAnonymizer.from_checkpoint(out, face_detector=None, device="cpu")
    assert anonymizer.name == "vqgan" and anonymizer.synthesizer.num_labels == 5
    assert anonymizer.crop_size == 16  # the official model's training resolution
    (output,) = anonymizer.anonymize([astronaut_subject], seeds=[0])
    assert anonymizer.last_fallbacks == [[]]
    mask = grow_mask(astronaut_subject.person_mask >= 0.5, DILATE)
    assert _changed(output, astronaut_subject.image)[mask].mean() > 0.95
