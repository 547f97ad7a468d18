"""Perceptual distances for the first stage, offline first; the kind is chosen by config.

- `lpips_vgg`: LPIPS with a VGG16 trunk (what taming trains with). The trunk is torchvision's
  ImageNet `vgg16-397923af.pth`, user-supplied through `deid.weights` (`vgg16_imagenet`);
  the five linear heads are the 7 KB `lpips/weights/v0.1/vgg.pth` of the `lpips` wheel, read
  as a plain file (sha256-pinned; lpips' own code, which downloads, is never imported).
- `fid_inception`: the same recipe (channel-normalised feature differences, spatial mean)
  on the offline FID Inception-v3's intermediate features, with uniform heads. Caveat:
  training a generator on the very network FID measures with lowers (biases) the FID you
  report for it; say so next to any FID of a model trained this way.
- `none`: no perceptual term (L1 + codebook + GAN only).

Every module has a `name` attribute, so a training module records which kind it used.
Inputs are images in [-1, 1], [B, 3, H, W]; outputs one distance per image, [B].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from deid.errors import MissingWeightError, WeightChecksumError
from deid.weights import PackageFile, sha256_of

PERCEPTUAL_KINDS = ("lpips_vgg", "fid_inception", "none")

LPIPS_HEADS = PackageFile("lpips", "weights/v0.1/vgg.pth", "lpips==0.1.4")
LPIPS_HEADS_SHA256 = "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"
VGG_CHANNELS = (64, 128, 256, 512, 512)
VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # relu1_2 .. relu5_3


def _unit_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Each position's feature vector scaled to unit length (LPIPS' normalize_tensor)."""
    return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + eps)


class NoPerceptual(nn.Module):
    """The `none` kind: a zero distance, so configs need no special case."""

    name = "none"

    def forward(self, inputs: Tensor, targets: Tensor) -> Tensor:
        return inputs.new_zeros(inputs.shape[0])


def lpips_head_weights() -> dict[str, Tensor]:
    """The LPIPS v0.1 VGG linear heads from the installed `lpips` wheel, sha256-checked."""
    path = LPIPS_HEADS.locate()
    if path is None:
        raise MissingWeightError(
            f"LPIPS heads missing: package file lpips/{LPIPS_HEADS.relpath} not found; "
            f"pip install {LPIPS_HEADS.pip_name}"
        )
    if sha256_of(path) != LPIPS_HEADS_SHA256:
        raise WeightChecksumError(
            f"LPIPS heads {path} have sha256 {sha256_of(path)}, expected {LPIPS_HEADS_SHA256}"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


class LPIPSVGG(nn.Module):
    """LPIPS-VGG (v0.1): frozen VGG16 trunk + learned 1x1 channel weights per layer."""

    name = "lpips_vgg"

    def __init__(
        self, vgg_state: dict[str, Tensor] | None = None, heads: dict[str, Tensor] | None = None
    ):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        features = make_layers(cfgs["D"])  # VGG16's conv trunk, without the 100M classifier
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in VGG_SLICES)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in VGG_CHANNELS)
        self.register_buffer(
            "shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False
        )
        if vgg_state is not None:
            self.load_vgg(vgg_state)
        if heads is not None:
            self.load_heads(heads)
        self.requires_grad_(False)
        self.eval()

    def load_vgg(self, state: dict[str, Tensor]) -> None:
        """Load torchvision VGG16 weights (`features.N.*`; the classifier is ignored)."""
        trunk: dict[str, Tensor] = {}
        for i, (a, b) in enumerate(VGG_SLICES):
            for layer in range(a, b):
                for kind in ("weight", "bias"):
                    key = f"features.{layer}.{kind}"
                    if key in state:
                        trunk[f"{i}.{layer - a}.{kind}"] = state[key]
        self.slices.load_state_dict(trunk, strict=True)

    def load_heads(self, heads: dict[str, Tensor]) -> None:
        """Load lpips' `lin{k}.model.1.weight` tensors into the five heads."""
        self.lins.load_state_dict(
            {f"{k}.weight": heads[f"lin{k}.model.1.weight"] for k in range(5)}
        )

    def train(self, mode: bool = True) -> LPIPSVGG:
        return super().train(False)  # always eval: frozen metric network

    def forward(self, inputs: Tensor, targets: Tensor) -> Tensor:
        x = (torch.cat((inputs, targets)) - self.shift) / self.scale
        total = inputs.new_zeros(inputs.shape[0])
        for features, lin in zip(self.slices, self.lins, strict=True):
            x = features(x)
            a, b = _unit_channels(x).chunk(2)
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total


_INCEPTION_STAGES = (
    ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"),
    ("pool", "Conv2d_3b_1x1", "Conv2d_4a_3x3"),
    ("pool", "Mixed_5b", "Mixed_5c", "Mixed_5d"),
    ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
    ("Mixed_7a", "Mixed_7b", "Mixed_7c"),
)


class InceptionPerceptual(nn.Module):
    """LPIPS-style distance on the FID Inception-v3's five stage outputs (uniform heads).

    Biases the FID of a model trained with it (module docstring).
    """

    name = "fid_inception"

    def __init__(self, network: nn.Module | None = None) -> None:
        super().__init__()
        if network is None:
            from deid.features.fid_inception import load_fid_inception

            network = load_fid_inception()
        self.net = network.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> InceptionPerceptual:
        return super().train(False)

    def forward(self, inputs: Tensor, targets: Tensor) -> Tensor:
        images = (torch.cat((inputs, targets)).clamp(-1, 1) + 1) / 2
        x = self.net.preprocess(images)
        total = inputs.new_zeros(inputs.shape[0])
        for stage in _INCEPTION_STAGES:
            for name in stage:
                x = F.max_pool2d(x, 3, stride=2) if name == "pool" else getattr(self.net, name)(x)
            a, b = _unit_channels(x).chunk(2)
            total = total + ((a - b) ** 2).mean(dim=(1, 2, 3))
        return total


def build_perceptual(kind: str) -> nn.Module:
    """The perceptual module of `kind` with its offline weights (see the module docstring).

    `lpips_vgg` resolves `vgg16_imagenet` through `deid.weights` (cache folder,
    `DEID_WEIGHT_VGG16_IMAGENET`, torchvision's cache); a missing file raises
    `MissingWeightError` with one line saying what to put where. It never downloads.
    """
    if kind == "none":
        return NoPerceptual()
    if kind == "fid_inception":
        return InceptionPerceptual()
    if kind == "lpips_vgg":
        from deid.weights import load_state_dict

        vgg_state = load_state_dict("vgg16_imagenet", allow_download=False)
        return LPIPSVGG(vgg_state, lpips_head_weights())
    raise ValueError(f"perceptual kind must be one of {PERCEPTUAL_KINDS}, got {kind!r}")
