"""CIAGAN as an `Anonymizer`: every face -> CIAGAN crop -> generator -> pasted back.

Per face: the eye-centred 178x218 crop of training (`deid.faces.regions.face_region`),
resized to the model's size, its landmark image and mask rendered exactly as in training, one
generator pass for all faces of a batch (`ciagan.nets.inpaint`, the composite training uses:
the generated face inside the mask, the crop's own background outside), resized back and
pasted into the frame through the face mask with a feathered edge
(`deid.faces.align.paste_region`). Pixels outside the pasted masks stay bit-identical.

`from_checkpoint(path)` rebuilds the generator from the checkpoint alone (its stored
hyper-parameters), loading with `weights_only=True` (`deid.checkpoints`); the anonymizer is
named after the checkpoint's experiment, so results tell the full model from its ablations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ciagan.nets import Generator, condition_name, inpaint
from ciagan.tensors import to_image_tensor, to_map_tensor, to_uint8_image
from ciagan.traced import TracedGenerator
from deid.anonymizers.base import NEEDS_FACES, NEEDS_LANDMARKS, Subject, check_subjects
from deid.checkpoints import experiment_name, hyper_parameters, load_checkpoint, submodule_weights
from deid.errors import DeidError
from deid.faces.align import RegionCrop, paste_region
from deid.faces.regions import face_region
from deid.faces.render import face_mask, landmark_image, resize_points
from deid.faces.types import Face

TRAIN_COMMAND = "python train.py experiment=ciagan_demo"  # or any other ciagan_* experiment


@dataclass
class GeneratorInput:
    """One region (a face or a person) ready for the generator, and where it came from."""

    subject: int  # index of the subject (image) it belongs to
    region: RegionCrop  # the crop in the frame, with its mask: what is pasted back
    image: np.ndarray  # S x S RGB model input
    pose: np.ndarray  # S x S x 3 pose image (landmark lines, or the silhouette)
    mask: np.ndarray  # S x S uint8 {0, 255}: where the generator paints


def load_generator(path: str | Path | None) -> tuple[Generator, str, dict[str, Any]]:
    """(generator, condition, checkpoint) rebuilt from a CIAGAN GAN checkpoint alone."""
    state = load_checkpoint(path, "CIAGAN", TRAIN_COMMAND)
    hparams = hyper_parameters(state)
    if "generator" not in hparams or "num_identities" not in hparams:
        raise DeidError(f"{path}: not a CIAGAN GAN checkpoint (no generator settings)")
    generator = Generator(
        int(hparams["num_identities"]),
        image_size=int(hparams.get("image_size", 128)),
        **dict(hparams["generator"] or {}),
    )
    generator.load_state_dict(submodule_weights(state, "generator"))
    return generator, condition_name(str(hparams.get("condition", "pose"))), state


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to run the generator under bf16 autocast (see `CiaganAnonymizer`)."""
    if precision not in ("fp32", "bf16", "auto"):
        raise DeidError(f"precision must be fp32, bf16 or auto, not {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class CiaganAnonymizer:
    """The trained generator behind the Anonymizer protocol."""

    name = "ciagan"
    needs = frozenset({NEEDS_FACES, NEEDS_LANDMARKS})

    def __init__(
        self,
        generator: Generator,
        condition: str = "pose",
        identity: int | None = None,
        feather: float = 4.0,
        batch_size: int = 16,
        device: str | torch.device | None = None,
        name: str = "ciagan",
        precision: str = "fp32",
        trace: bool | None = False,
    ) -> None:
        """`name`: how results and summaries call this method (the checkpoint's experiment).
        `precision`: fp32, bf16 (autocast), or auto (bf16 where the hardware computes it
        natively: CUDA with bf16, CPUs with AVX-512 BF16 / AMX; measured 1.35x for the 64 px
        demo generator on this CPU; the outputs differ from fp32 by a few grey levels).
        `trace`: run a frozen TorchScript copy (`ciagan.traced`); None = on CPU. Off by default
        here, since a generator passed in may still be training; `from_checkpoint` (a fresh
        generator of its own) turns it on."""
        self.name = name
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.bf16 = use_bf16(precision, self.device)
        self.generator = generator.to(self.device).eval()
        # the network `generate` runs: a frozen TorchScript graph on CPU (faster), unless `trace`
        # is False or the generator is shared with training (then it must stay a live module)
        self.trace = self.device.type == "cpu" if trace is None else bool(trace)
        self.network: Generator | TracedGenerator = (
            TracedGenerator(self.generator) if self.trace else self.generator
        )
        self.image_size = generator.image_size
        self.num_identities = generator.num_identities
        self.condition = condition_name(condition)
        if identity is not None and not 0 <= identity < self.num_identities:
            raise DeidError(
                f"identity={identity} is out of range: this model knows {self.num_identities} "
                f"identities (0..{self.num_identities - 1})"
            )
        self.identity = identity
        self.feather = feather
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(cls, path: str | Path | None, **options: Any) -> CiaganAnonymizer:
        generator, condition, state = load_generator(path)
        options.setdefault("name", experiment_name(state) or cls.name)
        options.setdefault("trace", None)
        return cls(generator, condition=condition, **options)

    # ------------------------------------------------------------------ per face
    def prepare(self, subject_index: int, image: np.ndarray, face: Face) -> GeneratorInput:
        region = face_region(image, face.landmarks)
        crop_points = region.transform.apply(face.landmarks)
        size = (self.image_size, self.image_size)
        points = resize_points(crop_points, region.transform.size, size)
        return GeneratorInput(
            subject=subject_index,
            region=region,
            image=cv2.resize(region.crop, size, interpolation=cv2.INTER_AREA),
            pose=landmark_image(points, size),
            mask=face_mask(points, size),
        )

    def target_identities(self, count: int, seed: int | None) -> list[int]:
        if self.identity is not None:
            return [self.identity] * count
        rng = np.random.default_rng(seed)
        return [int(v) for v in rng.integers(0, self.num_identities, size=count)]

    def subject_identities(self, index: int, subject: Subject) -> list[int]:
        """The caller's target identities for `subject` (one per face), checked."""
        chosen = [int(v) for v in subject.identities or []]
        if len(chosen) != len(subject.faces):
            raise ValueError(
                f"subject {index}: {len(chosen)} identities for {len(subject.faces)} faces"
            )
        bad = [v for v in chosen if not 0 <= v < self.num_identities]
        if bad:
            raise ValueError(
                f"subject {index}: identity {bad[0]} is out of range (0..{self.num_identities - 1})"
            )
        return chosen

    @torch.no_grad()
    def generate(
        self, inputs: Sequence[GeneratorInput], identities: Sequence[int]
    ) -> list[np.ndarray]:
        """Generated S x S regions composited over each input's background (uint8)."""
        outputs: list[np.ndarray] = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start : start + self.batch_size]
            image = torch.stack([to_image_tensor(f.image) for f in chunk]).to(self.device)
            pose = torch.stack([to_map_tensor(f.pose) for f in chunk]).to(self.device)
            mask = torch.stack([to_map_tensor(f.mask[..., None]) for f in chunk]).to(self.device)
            target = torch.tensor(identities[start : start + len(chunk)], device=self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                composite, _ = inpaint(self.network, image, pose, mask, target, self.condition)
            composite = composite.float()
            outputs.extend(to_uint8_image(c) for c in composite)
        return outputs

    def paste(self, image: np.ndarray, item: GeneratorInput, generated: np.ndarray) -> np.ndarray:
        """`generated` back into `image` through the face mask (`paste_region`)."""
        return paste_region(image, item.region, generated, self.feather)

    # ------------------------------------------------------------------ protocol
    def anonymize(
        self, subjects: Sequence[Subject], seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        check_subjects(self, subjects)
        prepared: list[GeneratorInput] = []
        identities: list[int] = []
        for index, subject in enumerate(subjects):
            faces = [self.prepare(index, subject.image, face) for face in subject.faces]
            seed = None if seeds is None else int(seeds[index])
            prepared.extend(faces)
            if self.identity is None and subject.identities is not None:
                identities.extend(self.subject_identities(index, subject))
            else:  # a fixed identity wins over everything; else drawn from the seed
                identities.extend(self.target_identities(len(faces), seed))
        generated = self.generate(prepared, identities)
        results = [subject.image.copy() for subject in subjects]
        for item, output in zip(prepared, generated, strict=True):
            results[item.subject] = self.paste(results[item.subject], item, output)
        return results
