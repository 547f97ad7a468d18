"""Convert an official taming-transformers checkpoint into our checkpoint format.

    python -m vqgan.convert_official last.ckpt --config 2021-01-20T16-04-20-project.yaml -o coco.pt

Reads the `.ckpt` with the restricted unpickler (`vqgan.official_pickle`: nothing in the file
is run), takes every size from tensor shapes, and only what shapes cannot tell from the
project yaml (the transformer's `n_head`; the training `resolution` that places attention
levels, 256 when there is no yaml). Two layouts:

- a conditional transformer (`first_stage_model.`, `cond_stage_model.`, `transformer.`
  prefixes, e.g. the COCO-Stuff segmentation transformer): all three networks;
- a standalone VQGAN (`encoder.`, `decoder.`, `quantize.` ... plus `loss.*`): the first stage,
  or the condition stage for a segmentation VQ model (`--stage`), plus the PatchGAN
  discriminator when the file has one (for fine-tuning).

Keys it does not need (LPIPS copies, `colorize`, `attn.mask`, ...) and top-level entries
(optimizer states, callbacks, ...) are dropped, listed, and recorded in `meta`. Condition and
image tokens keep sharing one embedding table (no offset), as in taming. Converted VQ
stages use the legacy beta placement, so fine-tuning keeps the official objective.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import yaml

from deid.errors import DeidError
from vqgan.checkpoint import FORMAT, VERSION, save_bundle
from vqgan.nets import (
    GPT,
    DiscriminatorConfig,
    GPTConfig,
    NLayerDiscriminator,
    VQAutoencoder,
    VQConfig,
)
from vqgan.official_pickle import LazyTensor, OfficialCheckpoint

DEFAULT_RESOLUTION = 256
TRANSFORMER_PREFIXES = {
    "first_stage": "first_stage_model.",
    "cond_stage": "cond_stage_model.",
    "transformer": "transformer.",
}
VQ_PARTS = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
DISCRIMINATOR_PREFIX = "loss.discriminator."


class ConversionError(DeidError):
    """The checkpoint does not have the layout or shapes of an official taming model."""


Shapes = dict[str, tuple[int, ...]]


def _shape(sd: dict[str, Any], key: str, what: str) -> tuple[int, ...]:
    if key not in sd:
        raise ConversionError(f"{what}: key {key!r} missing")
    return tuple(sd[key].shape)


def _indices(sd: dict[str, Any], pattern: str) -> list[int]:
    found = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    return sorted(found)


# ------------------------------------------------------------------ size inference
def infer_vq_config(
    sd: dict[str, Any], ddconfig: dict[str, Any] | None = None, what: str = "VQ model"
) -> VQConfig:
    """A VQConfig from the shapes of a VQModel state dict (unprefixed keys)."""
    dd = dict(ddconfig or {})
    ch, in_channels = _shape(sd, "encoder.conv_in.weight", what)[:2]
    levels = _indices(sd, r"encoder\.down\.(\d+)\.")
    if levels != list(range(len(levels))) or not levels:
        raise ConversionError(f"{what}: encoder levels {levels} are not 0..n-1")
    ch_mult = []
    for i in levels:
        out = _shape(sd, f"encoder.down.{i}.block.0.conv1.weight", what)[0]
        if out % ch:
            raise ConversionError(f"{what}: level {i} has {out} channels, not a multiple of {ch}")
        ch_mult.append(out // ch)
    num_res_blocks = len(_indices(sd, r"encoder\.down\.0\.block\.(\d+)\.conv1\.weight"))
    attn_levels = [i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in sd]
    resolution = int(dd.get("resolution", DEFAULT_RESOLUTION))
    attn_resolutions = tuple(resolution // 2**i for i in attn_levels)
    if "attn_resolutions" in dd:
        stated = {resolution // 2**i for i in levels} & {int(r) for r in dd["attn_resolutions"]}
        if stated != set(attn_resolutions):
            raise ConversionError(
                f"{what}: the yaml puts attention at {sorted(stated)} px, the weights at "
                f"{sorted(attn_resolutions)} (resolution {resolution})"
            )
    z_channels = _shape(sd, "encoder.conv_out.weight", what)[0]
    z_in = _shape(sd, "decoder.conv_in.weight", what)[1]
    if z_in != z_channels:
        raise ConversionError(
            f"{what}: encoder gives {z_channels} channels, decoder takes {z_in} (double_z is not supported)"
        )
    n_embed, embed_dim = _shape(sd, "quantize.embedding.weight", what)
    config = VQConfig(
        in_channels=in_channels,
        out_channels=_shape(sd, "decoder.conv_out.weight", what)[0],
        resolution=resolution,
        ch=ch,
        ch_mult=tuple(ch_mult),
        num_res_blocks=num_res_blocks,
        attn_resolutions=attn_resolutions,
        z_channels=z_channels,
        embed_dim=embed_dim,
        n_embed=n_embed,
        dropout=float(dd.get("dropout", 0.0)),
        beta=0.25,
        legacy_beta=True,
    )
    for key in ("ch", "in_channels", "z_channels", "num_res_blocks"):
        if key in dd and int(dd[key]) != getattr(config, key):
            raise ConversionError(f"{what}: yaml {key}={dd[key]}, weights {getattr(config, key)}")
    if "ch_mult" in dd and tuple(int(m) for m in dd["ch_mult"]) != config.ch_mult:
        raise ConversionError(
            f"{what}: yaml ch_mult={list(dd['ch_mult'])}, weights {list(config.ch_mult)}"
        )
    return config


def infer_gpt_config(
    sd: dict[str, Any], n_head: int | None, what: str = "transformer"
) -> GPTConfig:
    """A GPTConfig from minGPT shapes; `n_head` cannot be read from shapes and must be given."""
    vocab_size, n_embd = _shape(sd, "tok_emb.weight", what)
    block_size = _shape(sd, "pos_emb", what)[1]
    n_layer = len(_indices(sd, r"blocks\.(\d+)\.ln1\.weight"))
    if n_head is None:
        raise ConversionError(
            f"{what}: the number of attention heads cannot be read from weight shapes; pass "
            "--config PROJECT.yaml (model.params.transformer_config.params.n_head) or --n-head"
        )
    head = _shape(sd, "head.weight", what)
    if head != (vocab_size, n_embd):
        raise ConversionError(
            f"{what}: head.weight has shape {head}, expected {(vocab_size, n_embd)}"
        )
    return GPTConfig(
        vocab_size=vocab_size,
        block_size=block_size,
        n_layer=n_layer,
        n_head=int(n_head),
        n_embd=n_embd,
    )


def infer_discriminator_config(sd: dict[str, Any]) -> DiscriminatorConfig:
    """PatchGAN sizes: ndf and input channels from the first conv, depth from the conv count."""
    ndf, in_channels = _shape(sd, "main.0.weight", "discriminator")[:2]
    convs = [
        i for i in _indices(sd, r"main\.(\d+)\.weight") if len(sd[f"main.{i}.weight"].shape) == 4
    ]
    return DiscriminatorConfig(in_channels=in_channels, ndf=ndf, n_layers=len(convs) - 2)


# ------------------------------------------------------------------ layout
def _strip(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _check_against(model_cls: Any, config: Any, sd: dict[str, Any], what: str) -> None:
    """Every key and shape must match the model we build (checked on the meta device)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in model_cls(config).state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [
        f"{k}: file {tuple(sd[k].shape)}, model {expected[k]}"
        for k in sorted(set(expected) & set(sd))
        if tuple(sd[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if wrong:
        problems.append(f"wrong shape {'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}")
    if problems:
        raise ConversionError(
            f"{what}: weights do not form the model their shapes imply: {', '.join(problems)}"
        )


def _check_causal_masks(ckpt: OfficialCheckpoint, sd: dict[str, Any]) -> None:
    """`attn.mask` buffers must be plain lower-triangular (taming's n_unmasked = 0)."""
    for key, value in sd.items():
        if key.endswith(".attn.mask"):
            mask = ckpt.materialize(value)
            size = mask.shape[-1]
            if not torch.equal(mask.reshape(size, size), torch.ones(size, size).tril()):
                raise ConversionError(
                    f"{key} is not a causal mask (n_unmasked > 0 is not supported)"
                )


def _vq_part(sd: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    keep = {k: v for k, v in sd.items() if k.startswith(VQ_PARTS)}
    return keep, sorted(set(sd) - set(keep))


def _load_yaml(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as err:
        raise DeidError(f"{path}: unreadable project yaml ({err})") from None
    return data if isinstance(data, dict) else {}


def _get(cfg: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(cfg, dict) or key not in cfg:
            return None
        cfg = cfg[key]
    return cfg


def summarize_keys(keys: list[str]) -> list[str]:
    """Dropped keys grouped by pattern (digits -> N) with counts, for a short report."""
    counts = Counter(re.sub(r"\.\d+(?=\.|$)", ".N", k) for k in keys)
    return [f"{pattern} ({n})" if n > 1 else pattern for pattern, n in sorted(counts.items())]


def convert(
    ckpt_path: str | Path,
    config_path: str | Path | None = None,
    *,
    n_head: int | None = None,
    stage: str = "auto",
) -> dict[str, Any]:
    """The converted bundle (our format) of an official checkpoint; `meta` holds the report."""
    cfg = _load_yaml(config_path)
    params = _get(cfg, "model", "params") or {}
    with OfficialCheckpoint(ckpt_path) as ckpt:
        payload = ckpt.payload
        if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
            sd = dict(payload["state_dict"])
            ignored = sorted(str(k) for k in payload if k != "state_dict")
        elif isinstance(payload, dict) and all(isinstance(v, LazyTensor) for v in payload.values()):
            sd, ignored = dict(payload), []
        else:
            raise ConversionError(f"{ckpt_path}: no state_dict in the checkpoint")
        dropped = [str(k) for k, v in sd.items() if not isinstance(v, LazyTensor)]
        sd = {str(k): v for k, v in sd.items() if isinstance(v, LazyTensor)}
        parts: dict[str, tuple[Any, Any, dict[str, Any]]] = {}
        if any(k.startswith("transformer.") for k in sd):
            for name, prefix in TRANSFORMER_PREFIXES.items():
                part = _strip(sd, prefix)
                if not part:
                    continue
                if name == "transformer":
                    masks = [k for k in part if k.endswith(".attn.mask")]
                    _check_causal_masks(ckpt, part)
                    dropped += [prefix + k for k in masks]
                    keep = {k: v for k, v in part.items() if k not in masks}
                    heads = n_head or _get(params, "transformer_config", "params", "n_head")
                    parts[name] = (GPT, infer_gpt_config(keep, heads), keep)
                else:
                    keep, extra = _vq_part(part)
                    dropped += [prefix + k for k in extra]
                    stage_cfg = f"{name}_config" if name == "first_stage" else "cond_stage_config"
                    dd = _get(params, stage_cfg, "params", "ddconfig")
                    parts[name] = (VQAutoencoder, infer_vq_config(keep, dd, name), keep)
            claimed = tuple(TRANSFORMER_PREFIXES.values())
            dropped += [k for k in sd if not k.startswith(claimed)]
        elif "encoder.conv_in.weight" in sd:
            keep, extra = _vq_part(sd)
            config = infer_vq_config(keep, params.get("ddconfig"), "VQ model")
            if stage == "auto":
                target = str(_get(cfg, "model", "target") or "")
                is_seg = "Segmentation" in target or config.in_channels != 3
                stage = "cond" if is_seg else "first"
            name = {"first": "first_stage", "cond": "cond_stage"}[stage]
            parts[name] = (VQAutoencoder, config, keep)
            disc = _strip(sd, DISCRIMINATOR_PREFIX)
            if disc:
                parts["discriminator"] = (
                    NLayerDiscriminator,
                    infer_discriminator_config(disc),
                    disc,
                )
            dropped += [k for k in extra if not k.startswith(DISCRIMINATOR_PREFIX)]
        else:
            raise ConversionError(
                f"{ckpt_path}: neither a taming transformer (transformer.*) nor a VQGAN (encoder.*)"
            )
        _check_shared_vocabulary(parts)
        bundle: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        for name in ("first_stage", "cond_stage", "transformer", "discriminator"):
            bundle[name] = None
            if name in parts:
                model_cls, config, part = parts[name]
                _check_against(model_cls, config, part, name)
                state = {k: ckpt.materialize(v).contiguous() for k, v in part.items()}
                bundle[name] = {"config": config.to_dict(), "state_dict": state}
        bundle["meta"] = {
            "source": {"kind": "taming-official", "file": Path(ckpt_path).name},
            "converted_by": "vqgan.convert_official",
            "dropped_keys": sorted(dropped),
            "ignored_entries": ignored,
        }
    return bundle


def _check_shared_vocabulary(parts: dict[str, tuple[Any, Any, dict[str, Any]]]) -> None:
    """Condition and image tokens index one embedding table: it must hold both codebooks."""
    if "transformer" not in parts:
        return
    vocab = parts["transformer"][1].vocab_size
    for name in ("first_stage", "cond_stage"):
        if name in parts and parts[name][1].n_embed > vocab:
            raise ConversionError(
                f"{name} has {parts[name][1].n_embed} codes but the transformer's shared token "
                f"table only {vocab}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vqgan.convert_official",
        description="Convert an official taming checkpoint (.ckpt) into deid's VQGAN format.",
    )
    parser.add_argument("ckpt", type=Path, help="taming checkpoint, e.g. checkpoints/last.ckpt")
    parser.add_argument(
        "--config", type=Path, help="the run's project yaml (configs/*-project.yaml)"
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="output file (.pt)")
    parser.add_argument("--n-head", type=int, help="transformer heads, when there is no yaml")
    parser.add_argument(
        "--stage",
        choices=("auto", "first", "cond"),
        default="auto",
        help="for a standalone VQ model: image (first) or segmentation (cond) stage",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list every dropped key")
    args = parser.parse_args(argv)
    bundle = convert(args.ckpt, args.config, n_head=args.n_head, stage=args.stage)
    save_bundle(bundle, args.out)
    meta = bundle["meta"]
    for name in ("first_stage", "cond_stage", "transformer", "discriminator"):
        if bundle[name] is not None:
            n = sum(t.numel() for t in bundle[name]["state_dict"].values())
            print(f"{name}: {n:,} parameters, config {bundle[name]['config']}")
    dropped = meta["dropped_keys"]
    listing = dropped if args.verbose else summarize_keys(dropped)
    print(f"dropped {len(dropped)} keys: " + ("; ".join(listing) if listing else "none"))
    print(f"ignored entries: {', '.join(meta['ignored_entries']) or 'none'}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from deid.cli_utils import run_cli

    sys.exit(run_cli(lambda: main()))
