"""Codebook upkeep during training: data-dependent initialisation and dead-code restarts.

taming initialises the codebook uniformly in +-1/n and never touches it outside the gradient
step; with few updates (the demo's minutes) most codes are never chosen and the perplexity
stays near a handful of codes. Two optional procedures fix that without changing the network
(the quantizer's arithmetic, and so converted official weights, stay taming's):

- `init: data`: at the module's first step every code becomes a randomly chosen encoder output
  of that batch (plus a little noise), so all codes start where the data is;
- `restart_every: N`: every N steps (until step `restart_until`; 0 = for ever) codes that no
  latent chose during those N steps are moved onto randomly chosen encoder outputs.

Randomness comes from a generator seeded with (seed, step), so a resumed run repeats the same
choices; under DDP every rank gathers the same latents and counts, so all ranks make the same
choice and the codebooks stay identical.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from deid.errors import unknown_name
from deid.sampling import draw_seed
from vqgan.nets.quantize import VectorQuantizer

INITS = ("uniform", "data")
NOISE = 0.01  # relative to the latents' standard deviation


@dataclass(frozen=True)
class CodebookSchedule:
    init: str = "uniform"  # uniform (taming) | data
    restart_every: int = 0  # steps; 0 = never
    restart_until: int = 0  # last step that may restart codes; 0 = no limit

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise unknown_name("module.codebook.init", self.init, INITS)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> CodebookSchedule:
        return cls(**dict(values or {}))

    def restart_due(self, step: int) -> bool:
        if self.restart_every <= 0 or step == 0 or step % self.restart_every:
            return False
        return self.restart_until <= 0 or step <= self.restart_until


def _random_rows(latents: Tensor, count: int, seed: int) -> Tensor:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rows = torch.randint(len(latents), (count,), generator=generator)
    picked = latents[rows.to(latents.device)].float()
    noise = torch.randn(picked.shape, generator=generator).to(picked.device)
    return picked + NOISE * picked.std().clamp(min=1e-6) * noise


@torch.no_grad()
def reset_codes(quantizer: VectorQuantizer, codes: Tensor, latents: Tensor, seed: int) -> None:
    """Move `codes` (long indices) onto random rows of `latents` [N, embed_dim]."""
    if len(codes) == 0:
        return
    weight = quantizer.embedding.weight
    weight[codes] = _random_rows(latents, len(codes), seed).to(weight.dtype)


class CodebookKeeper:
    """Applies a `CodebookSchedule` to one quantizer; `counts` is the module's usage buffer
    (saved in checkpoints, so a resumed run knows which codes went unused)."""

    def __init__(self, schedule: CodebookSchedule, seed: int) -> None:
        self.schedule = schedule
        self.seed = seed

    def before_quantize(
        self,
        quantizer: VectorQuantizer,
        latents: Tensor,
        counts: Tensor,
        step: int,
        gather: Callable[[Tensor], Tensor],
        reduce: Callable[[Tensor], Tensor],
    ) -> dict[str, Tensor]:
        """Initialise or restart codes before this step's quantization; returns log values.

        latents: this batch's encoder outputs [B, C, h, w] (detached); `gather` concatenates a
        tensor over DDP ranks, `reduce` sums one (both identities on one process).
        """
        logs: dict[str, Tensor] = {}
        init = self.schedule.init == "data" and step == 0
        restart = self.schedule.restart_due(step)
        if not (init or restart):
            return logs
        flat = latents.detach().float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        flat = gather(flat)
        seed = draw_seed(self.seed, step, 0x0C0DE)
        if init:
            codes = torch.arange(quantizer.n_embed, device=flat.device)
        else:
            total = reduce(counts.clone())
            logs["codebook/window_usage"] = (total > 0).float().mean()
            codes = torch.nonzero(total == 0).flatten()
            counts.zero_()
        reset_codes(quantizer, codes, flat, seed)
        logs["codebook/reset_codes"] = torch.tensor(float(len(codes)))
        return logs
