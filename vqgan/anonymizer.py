"""The VQGAN full-body pipeline (paper section III) as an `Anonymizer`.

Per image (`Subject`):
(i) persons: the dataset's instances when the subject carries them (`person_instances`), else
    the connected components of `person_mask` (cut at `threshold`); a component that lies
    inside a larger person's crop is synthesized with that person (segmentation fragments),
    as is a given instance smaller than `min_area` pixels (and `min_fraction` of the image);
    any other piece that small falls back;
(ii) synthesis: per person an axis-aligned crop around it that keeps its aspect (margin of
    context, at most `max_aspect`:1, the shorter side `crop_size`, default the model's training
    resolution; `deid.bodies.persons.context_crop`), its condition map (person where any
    person is, the rest label elsewhere; `vqgan.synthesis`), tokens drawn by the fast exact
    sampler (taming's sliding window when the grid exceeds the transformer's) and decoded.
    Only the silhouette reaches the model: no pixel of the person does;
(iii) faces: those the caller found (`subject.faces`, e.g. the anonymize command's detector
    with its video tracking) plus `face_detector`'s on the ORIGINAL image (dlib CNN, as the
    paper; null: none); each face box grown by `face_expand` is mapped into every synthetic
    crop it falls in and Gaussian-blurred there, sigma `face_blur` of its longer side, faded in
    over the box's outer eighth (the model draws poor faces, paper Fig. 4);
(iv) composition: the synthetic crop replaces the person's ORIGINAL mask grown by `dilate`
    pixels entirely and fades out over `feather` pixels outside it
    (`deid.bodies.persons.paste_synthetic`); every pixel farther away is bit-identical.

Fails closed: a person that cannot be synthesized (too small, sampling or pasting error) gets
`fallback` over the same grown, feathered mask (`maskout`: filled with `fallback_fill`;
`blur`: sigma 1/6 of its region) and is reported in `last_fallbacks` (one list of reasons per
subject of the latest call), which `deid.anonymizers.frame.FrameAnonymizer` hands on as a
frame's `method_fallbacks`, so the anonymize summary counts them and `--strict` fails on them;
`totals` counts persons, syntheses and fallbacks over the anonymizer's life (the bodies suite
records them in results.json).

Seeds: each person's sampling seed is the identity the caller assigned to the face inside it
(`subject.identities`, aligned with `subject.faces`; the anonymize command keys these per
person and camera: one per face track in a video, per linked person across photos), since the
method declares `num_identities` (a 31-bit seed space); a person without such a face gets
a seed derived from the image's seed and its index. So a re-run with the same key reproduces
an output, and a tracked person keeps one appearance seed through a video.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deid.anonymizers.base import (
    NEEDS_FACES,
    NEEDS_PERSON_MASK,
    Subject,
    check_subjects,
    face_region,
)
from deid.anonymizers.baselines import gaussian
from deid.anonymizers.frame import mask_coverage
from deid.anonymizers.tracking import iou
from deid.bodies.persons import (
    blend_person,
    context_crop,
    crop_mask,
    mask_box,
    paste_synthetic,
    person_alpha,
    person_components,
)
from deid.checkpoints import experiment_name, load_checkpoint
from deid.errors import DeidError
from deid.faces.align import CropTransform
from deid.faces.types import Face
from vqgan.checkpoint import load_checkpoint as load_models
from vqgan.synthesis import ConditionLabels, PersonSynthesizer

SEED_SPACE = 2**31  # num_identities: the keyed identity of a face is its person's sampling seed
TRAIN_COMMAND = "python train.py experiment=vqgan_demo_transformer"
FALLBACK_MODES = ("maskout", "blur")
MIN_FACE_COVERAGE = 0.3  # a face belongs to a person when this share of its box is inside
SAME_FACE_IOU = 0.5  # a detector face this close to a given face is that face


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def derived_seed(seed: int, index: int) -> int:
    """The seed of person `index` of an image seeded `seed` (31 bits, stable across runs)."""
    digest = hashlib.sha256(f"vqgan-person:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & (SEED_SPACE - 1)


def edge_ramp(height: int, width: int, fraction: float = 0.125) -> np.ndarray:
    """(height, width) weights: 1 inside, falling to 0 at the border over `fraction` of the
    shorter side (so a blurred face box has no hard edge)."""
    reach = max(1.0, fraction * min(height, width))

    def ramp(n: int) -> np.ndarray:
        centres = np.arange(n) + 0.5
        return np.clip(np.minimum(centres, n - centres) / reach, 0.0, 1.0)

    return np.outer(ramp(height), ramp(width)).astype(np.float32)


@dataclass
class PersonPlan:
    """One person of one subject on its way through the pipeline."""

    subject: int
    mask: np.ndarray  # (H, W) bool in the frame: the person (+ the specks it took along)
    transform: CropTransform | None = None  # the synthesis crop; None: it falls back
    condition: np.ndarray | None = None  # crop-sized bool: where persons are
    seed: int = 0
    crop: np.ndarray | None = None  # the synthetic crop, once sampled
    reason: str | None = None  # why it falls back


class VqganAnonymizer:
    """Segmentation-conditioned VQGAN + transformer behind the Anonymizer protocol."""

    name = "vqgan"
    needs = frozenset({NEEDS_PERSON_MASK, NEEDS_FACES})
    num_identities = SEED_SPACE
    identity = None  # no fixed identity of its own (the anonymize command's identity= fixes seeds)

    def __init__(
        self,
        models: Any,
        *,
        name: str = "vqgan",
        top_k: int | None = 100,
        temperature: float = 1.0,
        person_label: int = 1,
        rest_label: int = 0,
        crop_size: int | None = None,
        margin: float = 0.15,
        max_aspect: float = 2.0,
        dilate: int = 3,
        feather: float = 4.0,
        threshold: float = 0.5,
        min_area: int = 256,
        min_fraction: float = 0.001,
        face_detector: str | dict[str, Any] | None = "dlib_cnn",
        face_expand: float = 0.25,
        face_blur: float = 0.125,
        fallback: str = "maskout",
        fallback_fill: Sequence[int] = (0, 0, 0),
        batch_size: int = 8,
        device: str | torch.device | None = None,
    ) -> None:
        """`models`: what `vqgan.load_checkpoint` returns; `name`: how results call the method
        (the checkpoint's experiment). The options are described in `conf/model/vqgan.yaml`."""
        if fallback not in FALLBACK_MODES:
            raise DeidError(f"fallback={fallback} is not one of {', '.join(FALLBACK_MODES)}")
        if dilate < 0 or feather < 0 or margin < 0 or max_aspect < 1:
            raise DeidError("dilate, feather and margin must be >= 0 and max_aspect >= 1")
        if not 0 < face_blur <= 1:
            raise DeidError(f"face_blur={face_blur} must be in (0, 1] (sigma / face side)")
        self.name = name
        self.synthesizer = PersonSynthesizer(
            models,
            ConditionLabels(person=int(person_label), rest=int(rest_label)),
            top_k=top_k,
            temperature=temperature,
            batch_size=batch_size,
            device=device,
        )
        cell = self.synthesizer.cell
        side = int(crop_size) if crop_size is not None else self.synthesizer.resolution
        if side < cell or side % cell:
            raise DeidError(f"crop_size={side} must be a positive multiple of {cell} px")
        self.crop_size = side
        self.margin = float(margin)
        self.max_aspect = float(max_aspect)
        self.dilate = int(dilate)
        self.feather = float(feather)
        self.threshold = float(threshold)
        self.min_area = int(min_area)
        self.min_fraction = float(min_fraction)
        self.face_detector = face_detector
        self.face_expand = float(face_expand)
        self.face_blur = float(face_blur)
        self.fallback = fallback
        self.fallback_fill = tuple(int(v) for v in fallback_fill)
        self._detector: Any = None
        self._reports = threading.local()  # video frames are anonymized on several threads
        self._totals_lock = threading.Lock()
        self.totals = {"persons": 0, "synthesized": 0, "fallbacks": 0}

    @classmethod
    def from_checkpoint(cls, path: str | Path | None, **options: Any) -> VqganAnonymizer:
        """The pipeline from a deid VQGAN checkpoint alone: a trained transformer run's
        `.ckpt` (named after its experiment) or a converted official one (named `vqgan`)."""
        try:
            state = load_checkpoint(path, "VQGAN", TRAIN_COMMAND)
        except DeidError as err:
            if path is not None and Path(path).is_file():
                raise DeidError(
                    f"{err} (an official taming checkpoint? convert it first: "
                    f"python -m vqgan.convert_official {path} --config PROJECT.yaml -o OUT.pt)"
                ) from None
            raise
        models = load_models(state, stages=("first_stage", "cond_stage", "transformer"))
        options.setdefault("name", experiment_name(state) or cls.name)
        return cls(models, **options)

    # ------------------------------------------------------------------ (i) persons
    def binary(self, subject: Subject) -> np.ndarray:
        mask = np.asarray(subject.person_mask)
        return mask if mask.dtype == bool else mask >= self.threshold

    def person_masks(self, subject: Subject) -> list[np.ndarray]:
        """The subject's persons: its instances (+ components of mask left uncovered by them),
        or the components of its person mask; ordered left to right."""
        binary = self.binary(subject)
        given = [np.asarray(m, dtype=bool) for m in subject.person_instances or []]
        given = [m for m in given if m.any()]
        if not given:
            return person_components(binary)
        rest = binary & ~np.any(given, axis=0)
        return given + person_components(rest)

    def crop_for(self, mask: np.ndarray) -> CropTransform:
        """The synthesis crop of one person (`deid.bodies.persons.context_crop`)."""
        return context_crop(
            mask_box(mask),
            self.crop_size,
            multiple=self.synthesizer.cell,
            margin=self.margin,
            min_pad=self.dilate + self.feather + 2,
            max_aspect=self.max_aspect,
        )

    def plan(self, index: int, subject: Subject, seed: int) -> list[PersonPlan]:
        """Crops, condition maps and seeds of the subject's persons, left to right.

        Largest first, a piece of the mask that lies inside an earlier person's crop is
        synthesized with that person (segmentation fragments; a child in front of a parent):
        any such component of the mask, and a given instance only when it is too small.
        """
        binary = self.binary(subject)
        height, width = binary.shape
        smallest = max(self.min_area, self.min_fraction * height * width)
        pieces = self.person_masks(subject)
        given = len([m for m in subject.person_instances or [] if np.any(m)])
        plans: list[PersonPlan] = []
        for number in sorted(range(len(pieces)), key=lambda i: -int(pieces[i].sum())):
            mask = pieces[number]
            small = mask.sum() < smallest
            host = self.host(plans, mask) if small or number >= given else None
            if host is not None:
                host.mask |= mask
            elif small:
                plans.append(PersonPlan(index, mask, reason="person mask too small"))
            else:
                plans.append(PersonPlan(index, mask.copy(), self.crop_for(mask)))
        plans.sort(key=lambda plan: mask_box(plan.mask)[:2])
        everyone = binary | np.any([p.mask for p in plans], axis=0) if plans else binary
        for plan in plans:
            if plan.transform is not None:
                plan.condition = crop_mask(everyone, plan.transform)
        self.assign_seeds(subject, plans, seed)
        return plans

    @staticmethod
    def host(plans: list[PersonPlan], mask: np.ndarray) -> PersonPlan | None:
        """The first planned person whose crop holds all of `mask`, if any."""
        x0, y0, x1, y1 = mask_box(mask)
        for plan in plans:
            if plan.transform is not None:
                left, top, right, bottom = plan.transform.source_rect()
                if left <= x0 and top <= y0 and x1 <= right and y1 <= bottom:
                    return plan
        return None

    def assign_seeds(self, subject: Subject, plans: list[PersonPlan], seed: int) -> None:
        """The identity of the face inside each person, else a seed derived from the image's."""
        identities = subject.identities
        if identities is not None and len(identities) != len(subject.faces):
            raise ValueError(f"{len(identities)} identities for {len(subject.faces)} faces")
        for number, plan in enumerate(plans):
            plan.seed = derived_seed(seed, number)
            if identities and subject.faces:
                cover = [mask_coverage(face, plan.mask) for face in subject.faces]
                best = int(np.argmax(cover))
                if cover[best] >= MIN_FACE_COVERAGE:
                    plan.seed = int(identities[best]) % SEED_SPACE

    # ------------------------------------------------------------------ (ii) synthesis
    def synthesize(self, plans: list[PersonPlan]) -> None:
        """Sample every plan that has a crop; a failing batch is retried person by person."""
        todo = [p for p in plans if p.transform is not None and p.reason is None]
        if not todo:
            return
        try:
            crops = self.synthesizer([p.condition for p in todo], [p.seed for p in todo])
            for plan, crop in zip(todo, crops, strict=True):
                plan.crop = crop
            return
        except Exception:  # isolate the person(s) it fails on
            pass
        for plan in todo:
            try:
                (plan.crop,) = self.synthesizer([plan.condition], [plan.seed])
            except Exception as err:
                plan.reason = f"sampling failed: {_one_line(err)}"

    # ------------------------------------------------------------------ (iii) faces
    def detected_faces(self, image: np.ndarray) -> list[Face]:
        """`face_detector`'s faces on the original image ([] when none is set)."""
        if self.face_detector is None:
            return []
        if self._detector is None:
            from deid.faces.detectors import build_detector_spec
            from deid.faces.detectors.named import detector_spec

            self._detector = build_detector_spec(detector_spec(self.face_detector))
        try:
            return list(self._detector.detect(image))
        except Exception as err:  # the blur is cosmetic (synthetic faces): never fail on it
            warnings.warn(f"vqgan: face detection failed ({_one_line(err)})", stacklevel=2)
            return []

    def faces(self, subject: Subject) -> list[Face]:
        """The subject's faces plus the detector's that are not one of them."""
        given = list(subject.faces)
        found = self.detected_faces(subject.image)
        extra = [f for f in found if all(iou(f.box, g.box) < SAME_FACE_IOU for g in given)]
        return given + extra

    def blur_faces(
        self, crop: np.ndarray, transform: CropTransform, faces: Sequence[Face], shape: tuple
    ) -> np.ndarray:
        """The synthetic crop with each face region (mapped from the frame) blurred."""
        out = crop.copy()
        height, width = crop.shape[:2]
        for face in faces:
            region = face_region(face, shape, self.face_expand)
            if region is None:
                continue
            x0, y0, x1, y1 = region
            corners = transform.apply(np.array([[x0, y0], [x1, y1]], dtype=np.float64) - 0.5) + 0.5
            cx0, cy0 = (max(int(np.floor(v)), 0) for v in corners[0])
            cx1, cy1 = (
                min(int(np.ceil(corners[1][0])), width),
                min(int(np.ceil(corners[1][1])), height),
            )
            if cx1 - cx0 < 2 or cy1 - cy0 < 2:
                continue
            pixels = np.ascontiguousarray(out[cy0:cy1, cx0:cx1])
            blurred = gaussian(pixels, self.face_blur * max(pixels.shape[:2]))
            weight = edge_ramp(*pixels.shape[:2])[..., None]
            out[cy0:cy1, cx0:cx1] = np.rint(weight * blurred + (1 - weight) * pixels).astype(
                np.uint8
            )
        return out

    # ------------------------------------------------------------------ (iv) composition
    def fall_back(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """`fallback` over the person's grown, feathered mask."""
        roi, alpha = person_alpha(mask, self.dilate, self.feather)
        if self.fallback == "maskout":
            return blend_person(image, roi, alpha, self.fallback_fill)
        x0, y0, x1, y1 = roi
        region = np.ascontiguousarray(image[y0:y1, x0:x1])
        return blend_person(image, roi, alpha, gaussian(region, max(region.shape[:2]) / 6))

    def compose(self, image: np.ndarray, plan: PersonPlan, faces: Sequence[Face]) -> np.ndarray:
        """The image with one person replaced: synthetic if sampled, else the fallback."""
        if plan.crop is not None and plan.transform is not None:
            try:
                crop = self.blur_faces(plan.crop, plan.transform, faces, image.shape)
                return paste_synthetic(
                    image, plan.mask, crop, plan.transform, self.dilate, self.feather
                )
            except Exception as err:
                plan.reason = f"pasting failed: {_one_line(err)}"
        return self.fall_back(image, plan.mask)

    # ------------------------------------------------------------------ protocol
    @property
    def last_fallbacks(self) -> list[list[str]]:
        """This thread's latest call: per subject, the persons covered by the fallback."""
        return getattr(self._reports, "fallbacks", [])

    def anonymize(
        self, subjects: Sequence[Subject], seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        check_subjects(self, subjects)
        seeds = [0] * len(subjects) if seeds is None else [int(s) for s in seeds]
        plans: list[PersonPlan] = []
        faces: list[list[Face]] = []
        for index, subject in enumerate(subjects):
            assert subject.person_mask is not None  # check_subjects guarantees it
            if subject.person_mask.shape[:2] != subject.image.shape[:2]:
                raise ValueError(
                    f"subject {index}: person mask {subject.person_mask.shape[:2]} != image "
                    f"{subject.image.shape[:2]}"
                )
            plans += self.plan(index, subject, seeds[index])
            faces.append(self.faces(subject) if any(p.subject == index for p in plans) else [])
        self.synthesize(plans)
        results = [subject.image.copy() for subject in subjects]
        reports: list[list[str]] = [[] for _ in subjects]
        for plan in plans:
            results[plan.subject] = self.compose(results[plan.subject], plan, faces[plan.subject])
            if plan.reason is not None:
                reports[plan.subject].append(
                    f"{self.name} could not synthesize a person ({plan.reason}): {self.fallback}"
                )
        self._reports.fallbacks = reports
        failed = sum(len(reasons) for reasons in reports)
        with self._totals_lock:
            self.totals["persons"] += len(plans)
            self.totals["synthesized"] += len(plans) - failed
            self.totals["fallbacks"] += failed
        return results
