"""Residual building blocks of CIAGAN (paper supplement, Tables 8-10).

Every 3x3 and 1x1 convolution goes through `make_conv`: spectral normalisation (the official
code wraps every block conv in it) and reflection padding are on by default and can be
switched off.

Where a convolution feeds an InstanceNorm directly (or through average pooling and a sum,
which keep a per-channel constant a per-channel constant), its bias is dropped: the norm
subtracts the channel mean, so such a bias never changes the output and would only be a
parameter that never receives gradient. With `norm=False` those biases come back.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from deid.errors import unknown_name

PADDING_MODES = ("reflect", "zeros", "replicate", "circular")


def make_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    *,
    bias: bool = True,
    spectral_norm: bool = True,
    padding_mode: str = "reflect",
) -> nn.Conv2d:
    """Stride-1 'same' convolution, optionally spectrally normalised."""
    if padding_mode not in PADDING_MODES:
        raise unknown_name("padding_mode", padding_mode, PADDING_MODES, ValueError)
    conv = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=kernel_size // 2,
        bias=bias,
        padding_mode=padding_mode,
    )
    return _spectral_norm(conv) if spectral_norm else conv


def make_linear(in_features: int, out_features: int, *, spectral_norm: bool = False) -> nn.Linear:
    """Fully connected layer, optionally spectrally normalised."""
    linear = nn.Linear(in_features, out_features)
    return _spectral_norm(linear) if spectral_norm else linear


def instance_norm(channels: int, enabled: bool = True) -> nn.Module:
    """Affine InstanceNorm (as in the paper), or a no-op when `enabled` is False."""
    return nn.InstanceNorm2d(channels, affine=True) if enabled else nn.Identity()


class ResBlockDown(nn.Module):
    """Table 8: halves the resolution.

    main: 3x3 conv + ReLU -> 3x3 conv -> 2x2 avg pool; shortcut: 1x1 conv -> 2x2 avg pool;
    sum -> InstanceNorm (affine; skipped with `norm=False`).

    The official code applies an extra ReLU to the block input (pre-activation) and puts the
    InstanceNorm outside the block; we follow the paper's table (no ReLU on the input, which
    for the first block would clip the image and landmark channels). `preactivation=True`
    is the official block (for converted official weights, whose inputs are in [0, 1]).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spectral_norm: bool = True,
        padding_mode: str = "reflect",
        norm: bool = True,
        preactivation: bool = False,
    ) -> None:
        super().__init__()
        self.preactivation = preactivation
        sn, pm = spectral_norm, padding_mode
        self.conv1 = make_conv(in_channels, out_channels, 3, spectral_norm=sn, padding_mode=pm)
        self.conv2 = make_conv(
            out_channels, out_channels, 3, bias=not norm, spectral_norm=sn, padding_mode=pm
        )
        self.shortcut = make_conv(
            in_channels, out_channels, 1, bias=not norm, spectral_norm=sn, padding_mode=pm
        )
        self.norm = instance_norm(out_channels, norm)

    def forward(self, x: Tensor) -> Tensor:
        main = self.conv2(F.relu(self.conv1(F.relu(x) if self.preactivation else x)))
        out = F.avg_pool2d(main, 2) + F.avg_pool2d(self.shortcut(x), 2)
        return self.norm(out)


class ResBlockUp(nn.Module):
    """Table 9: doubles the resolution.

    main: IN + ReLU -> 2x nearest upsample -> 3x3 conv + IN + ReLU -> 3x3 conv;
    shortcut: 2x nearest upsample -> 1x1 conv; sum -> InstanceNorm.

    Table 9 also lists a "2x2 average pooling" after the second conv. We leave it out: it would
    undo the upsampling, so the block would keep its input resolution, contradicting Table 5
    (e.g. 256x4x4 -> 256x8x8) and the shortcut branch, whose upsampled output could no longer
    be summed with the main branch. The official code has no pooling there either; the row
    reads as copied from Table 8.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spectral_norm: bool = True,
        padding_mode: str = "reflect",
        norm: bool = True,
    ) -> None:
        super().__init__()
        sn, pm = spectral_norm, padding_mode
        self.norm_in = instance_norm(in_channels, norm)
        self.conv1 = make_conv(
            in_channels, out_channels, 3, bias=not norm, spectral_norm=sn, padding_mode=pm
        )
        self.norm_mid = instance_norm(out_channels, norm)
        self.conv2 = make_conv(
            out_channels, out_channels, 3, bias=not norm, spectral_norm=sn, padding_mode=pm
        )
        self.shortcut = make_conv(
            in_channels, out_channels, 1, bias=not norm, spectral_norm=sn, padding_mode=pm
        )
        self.norm = instance_norm(out_channels, norm)

    def forward(self, x: Tensor) -> Tensor:
        main = F.interpolate(F.relu(self.norm_in(x)), scale_factor=2, mode="nearest")
        main = self.conv2(F.relu(self.norm_mid(self.conv1(main))))
        skip = self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.norm(main + skip)


class ResBlock(nn.Module):
    """Table 10: 3x3 conv + IN + ReLU -> 3x3 conv + IN, added to the input."""

    def __init__(
        self,
        channels: int,
        *,
        spectral_norm: bool = True,
        padding_mode: str = "reflect",
        norm: bool = True,
    ) -> None:
        super().__init__()
        sn, pm = spectral_norm, padding_mode
        self.conv1 = make_conv(
            channels, channels, 3, bias=not norm, spectral_norm=sn, padding_mode=pm
        )
        self.norm1 = instance_norm(channels, norm)
        self.conv2 = make_conv(
            channels, channels, 3, bias=not norm, spectral_norm=sn, padding_mode=pm
        )
        self.norm2 = instance_norm(channels, norm)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(out))


def check_image_size(image_size: int, num_stages: int, owner: str, param: str) -> None:
    """Raise a ValueError unless `num_stages` 2x resamplings link `image_size` and 4x4."""
    expected = 4 * 2**num_stages
    if image_size == expected:
        return
    if image_size >= 8 and image_size & (image_size - 1) == 0:
        hint = f"image_size={image_size} needs len({param}) == {image_size.bit_length() - 3}"
    else:
        hint = "image_size must be a power of two, at least 8"
    raise ValueError(
        f"{owner}: image_size must equal 4 * 2**len({param}) (the {param} stages resample "
        f"between 4x4 and the image), but len({param})={num_stages} gives {expected} px "
        f"and image_size={image_size}; {hint}"
    )
