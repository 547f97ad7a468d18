"""Convert the official CIAGAN generator (dvl-tum/ciagan `modelG.pth`) into our checkpoint.

    python -m ciagan.convert_official modelG.pth -o ciagan_official.ckpt
    deid anonymize photos/ -o out/ --anonymizer ciagan --ckpt ciagan_official.ckpt

The released weights are `arch_unet_flex.Generator`'s state dict (128 px, 1,200 identities,
no skip connections), a plain dict of tensors: it is read with `torch.load(weights_only=True)`,
so nothing in the file can run code. Every official key maps onto our `ciagan.nets.Generator`
built with the official options (`OFFICIAL_OPTIONS`); the number of identities and the image
size come from the tensor shapes. The output is a checkpoint like a training run's
(`state_dict` with `generator.*` keys, `hyper_parameters`, `deid_config` naming the experiment
`ciagan_official`), so `ciagan.anonymizer.CiaganAnonymizer.from_checkpoint` loads it.

Where the official network differs from our default generator, and how the conversion makes
it exact (the options, all off by default):
- encoder blocks apply ReLU to their input before the first conv (`preactivation=True`);
- the bottleneck fusion is conv -> InstanceNorm without our ReLU between (`fuse_relu=False`);
- the output conv pads with zeros, not by reflection (`output_padding="zeros"`);
- images are in [0, 1] (ToTensor), not [-1, 1] (`pixel_range="unit"`; `inpaint` converts, so
  callers keep passing [-1, 1]);
- spectral norm is the old `torch.nn.utils.spectral_norm` (`weight_orig`, `weight_u`,
  `weight_v`), ours the parametrization (`original`, `_u`, `_v`): the same tensors; at
  inference both divide by u.W.v of the stored vectors. (The official test.py never calls
  `.eval()`, so there every forward also runs one power iteration first; the stored vectors
  are converged, the difference is tiny.)
- biases of convs that feed an InstanceNorm (through pooling and sums at most) are dropped:
  the norm subtracts them exactly, our convs have none there (listed as `dropped`).
Not part of the weights: the official crop (CelebA's aligned 178x218 photo resized to 144x144,
then the central 128x128) is tighter than ours (the 178x218 eye-centred crop resized to
128x128), so faces appear about 12% smaller to the converted network than in its training.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ciagan.nets import Generator
from deid.errors import DeidError

OFFICIAL_OPTIONS = {
    "channels": [32, 64, 128, 256, 256],
    "up_channels": [256, 128, 64, 32, 16],
    "bottleneck_channels": 256,
    "num_res_blocks": 4,
    "id_hidden": [256, 256, 256, 256, 512, 512, 512],
    "id_channels": [64, 128, 256],
    "skip_connections": False,
    "spectral_norm": True,
    "padding_mode": "reflect",
    "preactivation": True,
    "fuse_relu": False,
    "output_padding": "zeros",
    "pixel_range": "unit",
}
EXPERIMENT = "ciagan_official"
IMAGE_SIZE = 128
SPECTRAL = {"weight_orig": "parametrizations.weight.original"}
SPECTRAL.update(
    {"weight_u": "parametrizations.weight.0._u", "weight_v": "parametrizations.weight.0._v"}
)


def _conv(official: str, ours: str, keep_bias: bool) -> dict[str, str | None]:
    """A spectrally normalised ConvLayer `official.conv2d.*` -> our conv `ours.*`."""
    mapping: dict[str, str | None] = {
        f"{official}.conv2d.{k}": f"{ours}.{v}" for k, v in SPECTRAL.items()
    }
    mapping[f"{official}.conv2d.bias"] = f"{ours}.bias" if keep_bias else None
    return mapping


def _norm(official: str, ours: str) -> dict[str, str | None]:
    return {f"{official}.{k}": f"{ours}.{k}" for k in ("weight", "bias")}


def key_map(levels: int = 5, res_blocks: int = 4, id_layers: int = 7) -> dict[str, str | None]:
    """Official key -> our key (None: a bias an InstanceNorm cancels, dropped), 128 px."""
    mapping: dict[str, str | None] = {}
    for i in range(levels):  # conv0..conv4 -> encoder.0..4
        k = i
        mapping |= _conv(f"conv{k}.conv_r1", f"encoder.{i}.conv1", True)
        mapping |= _conv(f"conv{k}.conv_r2", f"encoder.{i}.conv2", False)
        mapping |= _conv(f"conv{k}.conv_l", f"encoder.{i}.shortcut", False)
        mapping |= _norm(f"in{k}_e", f"encoder.{i}.norm")
    for i in range(levels):  # deconv4..deconv0 -> decoder.0..4
        k = levels - 1 - i
        mapping |= _norm(f"deconv{k}.norm_r1", f"decoder.{i}.norm_in")
        mapping |= _conv(f"deconv{k}.conv_r1", f"decoder.{i}.conv1", False)
        mapping |= _norm(f"deconv{k}.norm_r2", f"decoder.{i}.norm_mid")
        mapping |= _conv(f"deconv{k}.conv_r2", f"decoder.{i}.conv2", False)
        mapping |= _conv(f"deconv{k}.conv_l", f"decoder.{i}.shortcut", False)
        mapping |= _norm(f"in{k}_d", f"decoder.{i}.norm")
    mapping |= _conv("embed.0", "fuse.0", True)
    mapping |= _norm("embed.1", "fuse.2")
    for j in range(res_blocks):
        mapping |= _conv(f"res{j + 1}.conv1", f"res_blocks.{j}.conv1", False)
        mapping |= _norm(f"res{j + 1}.in1", f"res_blocks.{j}.norm1")
        mapping |= _conv(f"res{j + 1}.conv2", f"res_blocks.{j}.conv2", False)
        mapping |= _norm(f"res{j + 1}.in2", f"res_blocks.{j}.norm2")
    for j in range(id_layers):
        mapping |= {
            f"encode_one_hot.{2 * j}.{k}": f"id_mlp.{2 * j}.{k}" for k in ("weight", "bias")
        }
    for j in range(3):
        mapping |= _conv(f"encode_noise.{3 * j}", f"id_conv.{j}.0", True)
        mapping |= _norm(f"encode_noise.{3 * j + 2}", f"id_conv.{j}.2")
    mapping |= {f"conv_end.0.{k}": f"to_rgb.{k}" for k in ("weight", "bias")}
    return mapping


def read_official(path: str | Path) -> dict[str, Tensor]:
    """The official state dict, read safely (weights_only); `module.` prefixes (DataParallel)
    and a `state_dict` wrapper are accepted."""
    path = Path(path)
    if not path.is_file():
        raise DeidError(f"{path}: no such file (the official CIAGAN generator, e.g. modelG.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DeidError(
            f"{path}: not a plain state dict (it needs code to unpickle, e.g. a whole pickled "
            "model); save `model.state_dict()` and convert that"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise DeidError(f"{path}: unreadable ({str(err).splitlines()[0]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DeidError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_state(official: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(our generator's state dict, report): strict in both directions, shapes checked."""
    if "encode_one_hot.0.weight" not in official:
        raise DeidError("not an official CIAGAN generator: no encode_one_hot.0.weight")
    num_identities = int(official["encode_one_hot.0.weight"].shape[1])
    if "conv0.conv_r1.conv2d.weight_orig" not in official:
        raise DeidError(
            "a 64 px official generator (no conv0): the official code cannot run it either "
            "(its decoder ends with 32 channels where conv_end takes 16); only 128 px converts"
        )
    mapping = key_map()
    unknown = sorted(set(official) - set(mapping))
    missing = sorted(set(mapping) - set(official))
    if unknown or missing:
        raise DeidError(
            "not the official unet_flex generator: "
            + (
                f"unexpected keys {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; "
                if unknown
                else ""
            )
            + (f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}" if missing else "")
        )
    generator = Generator(num_identities, image_size=IMAGE_SIZE, **OFFICIAL_OPTIONS)
    expected = generator.state_dict()
    ours: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, target in mapping.items():
        value = official[key]
        if target is None:
            dropped.append(key)
            continue
        if tuple(value.shape) != tuple(expected[target].shape):
            raise DeidError(
                f"{key}: shape {tuple(value.shape)}, but the official generator with "
                f"{num_identities} identities has {tuple(expected[target].shape)} there ({target})"
            )
        ours[target] = value.detach().clone().to(expected[target].dtype)
    generator.load_state_dict(ours, strict=True)
    report = {"num_identities": num_identities, "image_size": IMAGE_SIZE, "dropped": dropped}
    return ours, report


def checkpoint(ours: dict[str, Tensor], report: dict[str, Any], source: str) -> dict[str, Any]:
    """A training-run-shaped checkpoint that `ciagan.anonymizer.load_generator` reads."""
    return {
        "state_dict": {f"generator.{k}": v for k, v in ours.items()},
        "hyper_parameters": {
            "num_identities": report["num_identities"],
            "image_size": report["image_size"],
            "generator": dict(OFFICIAL_OPTIONS),
            "condition": "pose",
            "crop": {"kind": "faces"},
        },
        "deid_config": {"task_name": EXPERIMENT},
        "converted_from": {"source": source, "dropped": report["dropped"]},
    }


def convert(path: str | Path, out: str | Path) -> dict[str, Any]:
    """Convert the file at `path` into `out`; returns the report."""
    from deid.media.atomic import atomic_path

    ours, report = convert_state(read_official(path))
    with atomic_path(out) as tmp:
        torch.save(checkpoint(ours, report, Path(path).name), tmp)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("generator", help="the official generator state dict (modelG.pth)")
    parser.add_argument("-o", "--out", required=True, help="checkpoint to write (.ckpt)")
    args = parser.parse_args(argv)
    try:
        report = convert(args.generator, args.out)
    except DeidError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{args.out}: official CIAGAN generator, {report['num_identities']} identities, "
        f"{report['image_size']} px; dropped {len(report['dropped'])} conv biases that an "
        "InstanceNorm cancels\n"
        f"use it: deid anonymize IN -o OUT --anonymizer ciagan --ckpt {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
