"""Size settings of the networks, as plain dataclasses that round-trip through dicts.

Why dicts: a checkpoint stores `asdict(config)` next to the state dict, so it rebuilds its
model alone and still loads with `torch.load(weights_only=True)` (ints, floats, lists only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from deid.errors import DeidError

T = TypeVar("T")


def _from_dict(cls: type[T], values: dict[str, Any], what: str) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise DeidError(f"{what} config has unknown keys {unknown}; known: {sorted(known)}")
    tuples = {k: tuple(v) for k, v in values.items() if isinstance(v, list)}
    return cls(**{**values, **tuples})


@dataclass(frozen=True)
class VQConfig:
    """A VQ autoencoder (taming's `ddconfig` + `n_embed`/`embed_dim`).

    Defaults are taming's f=16 image stage (256 px -> 16x16 tokens). The segmentation
    condition stage is the same model with `in_channels = out_channels = number of labels`.
    `legacy_beta` selects taming's quantizer loss (beta on the codebook term): use it when
    fine-tuning official weights; new training uses the VQ-VAE paper's placement.
    """

    in_channels: int = 3
    out_channels: int = 3
    resolution: int = 256
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    z_channels: int = 256
    embed_dim: int = 256
    n_embed: int = 1024
    dropout: float = 0.0
    beta: float = 0.25
    legacy_beta: bool = False

    def __post_init__(self) -> None:
        if not self.ch_mult:
            raise DeidError("VQ config: ch_mult must have at least one level")
        channels = [self.ch] + [self.ch * m for m in self.ch_mult]
        odd = [c for c in channels if c % 32]
        if odd:
            raise DeidError(f"VQ config: channel counts {odd} are not multiples of 32 (GroupNorm)")
        if self.resolution % self.downsampling:
            raise DeidError(
                f"VQ config: resolution {self.resolution} is not divisible by the "
                f"downsampling factor {self.downsampling}"
            )

    @property
    def downsampling(self) -> int:
        """Image pixels per latent side (16 for five levels)."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def latent_size(self) -> int:
        """Latent grid side at the training resolution."""
        return self.resolution // self.downsampling

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VQConfig:
        return _from_dict(cls, values, "VQ")


@dataclass(frozen=True)
class GPTConfig:
    """A minGPT transformer. Defaults are taming's COCO-Stuff segmentation transformer."""

    vocab_size: int = 8192
    block_size: int = 512
    n_layer: int = 32
    n_head: int = 16
    n_embd: int = 1280
    embd_pdrop: float = 0.0
    resid_pdrop: float = 0.0
    attn_pdrop: float = 0.0

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise DeidError(
                f"GPT config: n_embd {self.n_embd} is not divisible by n_head {self.n_head}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GPTConfig:
        return _from_dict(cls, values, "GPT")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """taming's PatchGAN (pix2pix NLayerDiscriminator with BatchNorm)."""

    in_channels: int = 3
    ndf: int = 64
    n_layers: int = 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiscriminatorConfig:
        return _from_dict(cls, values, "discriminator")
