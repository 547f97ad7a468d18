"""CIAGAN discriminator (paper supplement, Table 6).

Residual down blocks to a 4x4 map, then two fully connected layers. The identity network
(`ciagan.nets.identity`) reuses the same trunk, as the paper says.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ciagan.nets.blocks import ResBlockDown, check_image_size, make_linear


class DownTrunk(nn.Module):
    """Residual down blocks from `image_size` to 4x4, flattened, then FC + LeakyReLU(0.2).

    Output: (B, hidden) features, the input of the last FC layer of Table 6.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        channels: Sequence[int],
        hidden: int,
        *,
        spectral_norm: bool,
        norm: bool,
        padding_mode: str,
        owner: str,
    ) -> None:
        super().__init__()
        channels = tuple(channels)
        if not channels:
            raise ValueError(f"{owner}: channels must not be empty")
        check_image_size(image_size, len(channels), owner, "channels")
        self.in_channels = in_channels
        self.image_size = image_size
        self.owner = owner
        self.blocks = nn.Sequential()
        prev = in_channels
        for ch in channels:
            self.blocks.append(
                ResBlockDown(
                    prev, ch, spectral_norm=spectral_norm, padding_mode=padding_mode, norm=norm
                )
            )
            prev = ch
        self.fc = make_linear(prev * 16, hidden, spectral_norm=spectral_norm)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(
                f"{self.owner} expects (B, {self.in_channels}, {self.image_size}, "
                f"{self.image_size}), got {tuple(x.shape)}"
            )
        return self.act(self.fc(self.blocks(x).flatten(1)))


class Discriminator(nn.Module):
    """Table 6: image (+ landmark image) -> one unbounded realness score per sample.

    Default input: the composited face (3) concatenated with the landmark image (3), as in the
    official code. Choices:
    - The last layer is linear. The official code puts a LeakyReLU on the scalar output, which
      for LSGAN (targets 0 and 1, squared error) only shrinks negative scores' gradients by 5x;
      a least-squares critic wants an unbounded linear score.
    - No InstanceNorm by default (`norm=False`), as in the official discriminator: spectral
      norm already conditions D, and per-sample normalisation would discard the per-channel
      statistics (e.g. colour or contrast mismatch between the generated face and its
      background) that a discriminator should be able to see. `norm=True` adds affine IN.
    - With `spectral_norm=True` the two FC layers are spectrally normalised too (SNGAN style),
      not only the convolutions.
    """

    def __init__(
        self,
        in_channels: int = 6,
        image_size: int = 128,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        hidden: int = 1024,
        spectral_norm: bool = True,
        norm: bool = False,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        self.trunk = DownTrunk(
            in_channels,
            image_size,
            channels,
            hidden,
            spectral_norm=spectral_norm,
            norm=norm,
            padding_mode=padding_mode,
            owner="Discriminator",
        )
        self.head = make_linear(hidden, 1, spectral_norm=spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B,) raw scores."""
        return self.head(self.trunk(x)).squeeze(1)
