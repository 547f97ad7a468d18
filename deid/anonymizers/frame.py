"""One frame through the chosen method, every face that method cannot handle through the fallback.

`FrameAnonymizer(method)(image, faces, identities, person_mask)`:
1. faces the method cannot take are set aside with a reason: unusable landmarks for a
   landmark method, a person mask that misses the face for a person-mask method;
2. the method runs once on the rest (one batch); if it raises or returns something that is not
   an image of the input's size, it runs again face by face on the accumulating result, so one
   bad face does not take the others down with it;
3. every face set aside or failed gets the fallback (strong blur or black box) on top.
No face is ever returned untouched because something failed. Regions the method covered with
a fallback of its own (`last_fallbacks`, see `deid.anonymizers.base.Anonymizer.anonymize`; e.g.
a person a body method could not synthesize) are listed apart, in `method_fallbacks`.
`many(frames)` does the same for several frames in one method call (videos send frames in
pairs, so a generator gets a larger batch); if that call fails, each frame goes alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from deid.anonymizers.base import (
    NEEDS_LANDMARKS,
    NEEDS_PERSON_MASK,
    Anonymizer,
    Subject,
    face_region,
)
from deid.anonymizers.fallback import FALLBACK_MODES, apply_fallback, landmark_problem
from deid.faces.types import Face

MIN_MASK_COVERAGE = 0.5  # a person-mask method must cover at least half of each face box


@dataclass
class FrameResult:
    """The anonymized frame and what happened to its faces."""

    image: np.ndarray
    anonymized: int = 0  # faces the method processed
    fallbacks: list[str] = field(default_factory=list)  # one reason per face that fell back
    fallback_faces: list[int] = field(default_factory=list)  # their indices in `faces`
    regions: list[tuple[int, int, int, int]] = field(default_factory=list)  # boxes replaced
    mask: np.ndarray | None = None  # the person mask a person-mask method replaced
    # one reason per region the method covered with its own fallback (`last_fallbacks`)
    method_fallbacks: list[str] = field(default_factory=list)


@dataclass
class FrameInput:
    """One frame and what the method needs for it."""

    image: np.ndarray
    faces: list[Face]
    identities: list[int] | None = None
    person_mask: np.ndarray | None = None
    seed: int = 0

    @classmethod
    def of(
        cls,
        image: np.ndarray,
        faces: Sequence[Face],
        identities: Sequence[int] | None = None,
        person_mask: np.ndarray | None = None,
        seed: int = 0,
    ) -> FrameInput:
        ids = None if identities is None else [int(v) for v in identities]
        if ids is not None and len(ids) != len(faces):
            raise ValueError(f"{len(ids)} identities for {len(faces)} faces")
        return cls(image, list(faces), ids, person_mask, seed)

    def subject(self, indices: list[int], image: np.ndarray | None = None) -> Subject:
        """The method's view of this frame: only the faces `indices`, on `image` (default: the
        frame; face-by-face retries pass the result so far)."""
        ids = None if self.identities is None else [self.identities[i] for i in indices]
        faces = [self.faces[i] for i in indices]
        pixels = self.image if image is None else image
        return Subject(pixels, faces, person_mask=self.person_mask, identities=ids)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def mask_coverage(face: Face, mask: np.ndarray) -> float:
    """Fraction of the (clipped) face box inside the person mask."""
    height, width = mask.shape[:2]
    x0, y0, x1, y1 = face.box
    x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    x1, y1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    region = mask[y0:y1, x0:x1]
    inside = region if region.dtype == bool else region >= 0.5
    return float(inside.mean())


class FrameAnonymizer:
    """Apply `method` to one frame with per-face isolation and a fail-closed fallback."""

    def __init__(self, method: Anonymizer, fallback: str = "blur", expand: float = 0.25) -> None:
        if fallback not in FALLBACK_MODES:
            raise ValueError(f"fallback must be one of {FALLBACK_MODES}, got {fallback!r}")
        self.method = method
        self.fallback = fallback
        self.expand = float(expand)
        self.needs_landmarks = NEEDS_LANDMARKS in method.needs
        self.needs_mask = NEEDS_PERSON_MASK in method.needs

    def problem(self, face: Face, person_mask: np.ndarray | None) -> str | None:
        """Why the method cannot take `face` (None when it can)."""
        if self.needs_landmarks:
            problem = landmark_problem(face)
            if problem is not None:
                return problem
        if self.needs_mask:
            if person_mask is None:
                return "no person mask"
            if mask_coverage(face, person_mask) < MIN_MASK_COVERAGE:
                return "the person mask misses this face"
        return None

    def _check(self, out: object, image: np.ndarray) -> np.ndarray:
        if not isinstance(out, np.ndarray) or out.shape != image.shape or out.dtype != np.uint8:
            got = getattr(out, "shape", type(out).__name__)
            raise ValueError(f"{self.method.name} returned {got}, expected {image.shape} uint8")
        return out

    def _run(self, subject: Subject, seed: int) -> tuple[np.ndarray, list[str]]:
        outputs, own = self._anonymize([subject], [seed])
        if len(outputs) != 1:
            raise ValueError(f"{self.method.name} returned {len(outputs)} images for 1")
        return self._check(outputs[0], subject.image), own[0]

    def _anonymize(
        self, subjects: list[Subject], seeds: list[int]
    ) -> tuple[list[np.ndarray], list[list[str]]]:
        """The method's outputs and its own fallbacks per subject (its report of this call on
        this thread, see `Anonymizer.anonymize`)."""
        outputs = self.method.anonymize(subjects, seeds=seeds)
        return outputs, self.method_fallbacks(len(subjects))

    def method_fallbacks(self, subjects: int = 1) -> list[list[str]]:
        """What the method's latest call (on `subjects` subjects) covered with its own fallback,
        per subject."""
        reported = getattr(self.method, "last_fallbacks", None)
        if not isinstance(reported, list) or len(reported) != subjects:
            return [[] for _ in range(subjects)]
        return [[str(reason) for reason in each] for each in reported]

    def _split(self, frame: FrameInput) -> tuple[list[int], dict[int, str]]:
        """(faces the method takes, {face: why not} for the rest)."""
        good: list[int] = []
        failed: dict[int, str] = {}
        for index, face in enumerate(frame.faces):
            problem = self.problem(face, frame.person_mask)
            if problem is None:
                good.append(index)
            else:
                failed[index] = problem
        return good, failed

    def __call__(
        self,
        image: np.ndarray,
        faces: Sequence[Face],
        identities: Sequence[int] | None = None,
        person_mask: np.ndarray | None = None,
        seed: int = 0,
    ) -> FrameResult:
        return self._one(FrameInput.of(image, faces, identities, person_mask, seed))

    def many(self, frames: Sequence[FrameInput]) -> list[FrameResult]:
        """Several frames through one method call, so a generator sees all their faces in one
        batch (a 64 px CIAGAN paints ~1.3x as many faces per second at 6 per batch as at 3).
        If that call fails or returns something wrong, every frame goes alone (`__call__`),
        so a bad face still only costs itself."""
        if len(frames) == 1:
            return [self._one(frames[0])]
        splits = [self._split(frame) for frame in frames]
        runs = [k for k, (good, _) in enumerate(splits) if good or self.needs_mask]
        outputs: dict[int, np.ndarray] = {}
        own: list[list[str]] = []
        if runs:
            subjects = [frames[k].subject(splits[k][0]) for k in runs]
            try:
                produced, own = self._anonymize(subjects, [frames[k].seed for k in runs])
                if len(produced) != len(runs):
                    raise ValueError(f"{len(produced)} images for {len(runs)}")
                outputs = {
                    k: self._check(o, frames[k].image) for k, o in zip(runs, produced, strict=True)
                }
            except Exception:  # isolate: frame by frame, then face by face
                return [self._one(frame) for frame in frames]
        reasons = dict(zip(runs, own, strict=True))
        results = []
        for k, frame in enumerate(frames):
            good, failed = splits[k]
            done = good if k in outputs else []
            image = outputs.get(k, frame.image)
            results.append(self._finish(frame, image, good, done, failed, reasons.get(k, [])))
        return results

    def _one(self, frame: FrameInput) -> FrameResult:
        good, failed = self._split(frame)
        result = frame.image
        done: list[int] = []
        own: list[str] = []
        if good or self.needs_mask:
            try:
                result, own = self._run(frame.subject(good), frame.seed)
                done = good
            except Exception as err:  # isolate the face(s) it fails on
                if len(good) <= 1 or self.needs_mask:
                    failed.update({i: f"{self.method.name} failed: {_one_line(err)}" for i in good})
                else:
                    for index in good:
                        try:
                            result, extra = self._run(frame.subject([index], result), frame.seed)
                            done.append(index)
                            own += extra
                        except Exception as single:
                            failed[index] = f"{self.method.name} failed: {_one_line(single)}"
        return self._finish(frame, result, good, done, failed, own)

    def _finish(
        self,
        frame: FrameInput,
        result: np.ndarray,
        good: list[int],
        done: list[int],
        failed: dict[int, str],
        own: list[str],
    ) -> FrameResult:
        """Fallbacks on top of what the method made (`done` of the faces it could take,
        `good`), and the record of what covers what."""
        image, faces = frame.image, frame.faces
        if failed:
            result = result.copy() if result is image else result
            for index in sorted(failed):
                apply_fallback(result, faces[index], self.fallback, self.expand)
        order = sorted(failed)
        method_expand = float(getattr(self.method, "expand", 0.0))
        boxes = [face_region(faces[i], image.shape, method_expand) for i in done]
        boxes += [face_region(faces[i], image.shape, self.expand) for i in order]
        mask = None
        person_mask = frame.person_mask
        if self.needs_mask and person_mask is not None and done == good:
            mask = person_mask if person_mask.dtype == bool else person_mask >= 0.5
        return FrameResult(
            image=result if result is not image else image.copy(),
            anonymized=len(done),
            fallbacks=[failed[i] for i in order],
            fallback_faces=order,
            regions=[box for box in boxes if box is not None],
            mask=mask,
            method_fallbacks=own,
        )
