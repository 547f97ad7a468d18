"""Step (ii) of the pipeline: person label maps -> sampled synthetic images.

A crop's condition is a label map: `person` where any person is, `rest` everywhere else, as a
one-hot float map of the condition stage's labels (its `in_channels`). Two label sets occur:
- taming's COCO-Stuff segmentation model (183 labels, the paper's): its data shifts the
  COCO-Stuff maps one up, so 0 is 'unlabeled' and 1 is 'person' (cocostuff labels.txt); the
  rest of the crop is 0, 'unlabeled': we tell the model nothing about the background;
- a two-label person model (deid's own training on person masks): 0 background, 1 person.
So person 1 and rest 0 serve both; other label sets set `ConditionLabels`.

The condition stage turns the map into tokens, `vqgan.sampling.sample_fast` draws image tokens
for them (top-k, temperature, one seed per item; taming's sliding window when the grid is
larger than the transformer's), and the first stage decodes them. Crops of the same size share
a batch; different sizes run apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from deid.errors import DeidError
from vqgan.checkpoint import VQGANModels
from vqgan.sampling import SampleStats, sample_fast

REQUIRED = ("first_stage", "cond_stage", "transformer")


@dataclass(frozen=True)
class ConditionLabels:
    """Label indices of the condition map (see the module docstring)."""

    person: int = 1
    rest: int = 0


class PersonSynthesizer:
    """Condition, sample, decode: bool person maps (crop-sized) -> RGB uint8 crops."""

    def __init__(
        self,
        models: VQGANModels,
        labels: ConditionLabels = ConditionLabels(),  # noqa: B008 (frozen, so shared safely)
        *,
        top_k: int | None = 100,
        temperature: float = 1.0,
        batch_size: int = 8,
        device: str | torch.device | None = None,
    ) -> None:
        missing = [name for name in REQUIRED if getattr(models, name) is None]
        if missing:
            have = ", ".join(models.networks()) or "nothing"
            raise DeidError(
                f"the VQGAN pipeline needs a first stage, a condition stage and a transformer; "
                f"this checkpoint has {have} (missing {', '.join(missing)}): use a transformer "
                "checkpoint (trained, or converted with python -m vqgan.convert_official)"
            )
        first, cond = models.first_stage.config, models.cond_stage.config  # type: ignore[union-attr]
        if first.downsampling != cond.downsampling:
            raise DeidError(
                f"condition stage downsamples by {cond.downsampling}, the image stage by "
                f"{first.downsampling}: their token grids would not line up"
            )
        vocab = models.transformer.config.vocab_size  # type: ignore[union-attr]
        if max(first.n_embed, cond.n_embed) > vocab:
            raise DeidError(
                f"transformer vocabulary {vocab} is smaller than the codebooks "
                f"({first.n_embed} image, {cond.n_embed} condition codes)"
            )
        self.num_labels = cond.in_channels
        for role, value in (("person", labels.person), ("rest", labels.rest)):
            if not 0 <= value < self.num_labels:
                raise DeidError(
                    f"{role} label {value} is out of range: the condition stage has "
                    f"{self.num_labels} labels (0..{self.num_labels - 1})"
                )
        if top_k is not None and top_k < 1:
            raise DeidError(f"top_k={top_k} must be at least 1 (or null: no top-k)")
        if temperature <= 0:
            raise DeidError(f"temperature={temperature} must be > 0")
        if batch_size < 1:
            raise DeidError(f"batch_size={batch_size} must be at least 1")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.models = models.to(self.device)
        self.labels = labels
        self.top_k = top_k
        self.temperature = float(temperature)
        self.batch_size = int(batch_size)
        self.stats = SampleStats()

    @property
    def cell(self) -> int:
        """Image pixels per token side: crop sides must be multiples of it."""
        return self.models.first_stage.config.downsampling  # type: ignore[union-attr]

    @property
    def resolution(self) -> int:
        """The side the image stage was trained at (the default crop's shorter side)."""
        return self.models.first_stage.config.resolution  # type: ignore[union-attr]

    def condition(self, person: np.ndarray) -> torch.Tensor:
        """[num_labels, H, W] one-hot float map of a bool (H, W) person map."""
        labels = np.where(person, self.labels.person, self.labels.rest)
        index = torch.from_numpy(labels.astype(np.int64))
        onehot = torch.nn.functional.one_hot(index, self.num_labels)
        return onehot.permute(2, 0, 1).float()

    @torch.inference_mode()
    def __call__(self, persons: Sequence[np.ndarray], seeds: Sequence[int]) -> list[np.ndarray]:
        """One synthetic RGB uint8 image per person map (the map's size), seeded per item.

        Maps of one size run as batches of `batch_size`; sides must be multiples of `cell`.
        """
        if len(persons) != len(seeds):
            raise ValueError(f"{len(seeds)} seeds for {len(persons)} person maps")
        out: list[np.ndarray | None] = [None] * len(persons)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, person in enumerate(persons):
            height, width = person.shape
            if height % self.cell or width % self.cell:
                raise ValueError(f"crop {width}x{height} is not a multiple of {self.cell} px")
            by_size.setdefault((height, width), []).append(index)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                images = self._sample([persons[i] for i in chunk], [int(seeds[i]) for i in chunk])
                for index, image in zip(chunk, images, strict=True):
                    out[index] = image
        return [image for image in out if image is not None]

    def _sample(self, persons: list[np.ndarray], seeds: list[int]) -> list[np.ndarray]:
        models = self.models
        onehot = torch.stack([self.condition(p) for p in persons]).to(self.device)
        cond = models.cond_stage.encode_to_indices(onehot)  # type: ignore[union-attr]
        tokens = sample_fast(
            models.transformer,  # type: ignore[arg-type]
            cond,
            seeds=seeds,
            top_k=self.top_k,
            temperature=self.temperature,
            stats=self.stats,
        )
        decoded = models.first_stage.decode_indices(tokens)  # type: ignore[union-attr]
        pixels = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return list(pixels.permute(0, 2, 3, 1).cpu().numpy())
