"""Our VQGAN checkpoint format and `load_checkpoint`, the one way to get models back.

A checkpoint is a plain dict that `torch.load(weights_only=True)` reads:

    {"format": "deid-vqgan", "version": 1,
     "first_stage":   {"config": VQConfig dict,  "state_dict": {...}} | None,
     "cond_stage":    {"config": VQConfig dict,  "state_dict": {...}} | None,
     "transformer":   {"config": GPTConfig dict, "state_dict": {...}} | None,
     "discriminator": {"config": DiscriminatorConfig dict, "state_dict": {...}} | None,
     "meta": {...}}   # provenance: converter report, perceptual kind, training config ...

Every entry rebuilds its network alone (`VQAutoencoder(VQConfig.from_dict(...))`, ...).
`vqgan.convert_official` writes this format from taming checkpoints.

Hook for trained checkpoints: the Lightning modules (a later issue) write their `.ckpt` with
`deid_config` (the resolved Hydra config) and, in `on_save_checkpoint`,
`checkpoint["deid_vqgan"] = make_bundle(...)` built from their networks. Those tensors share
storage with Lightning's `state_dict`, so torch.save stores them once. `load_checkpoint`
reads the `deid_vqgan` entry of such a file exactly like a converted checkpoint.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deid.errors import BadInputError, DeidError
from vqgan.nets import (
    GPT,
    DiscriminatorConfig,
    GPTConfig,
    NLayerDiscriminator,
    VQAutoencoder,
    VQConfig,
)

FORMAT = "deid-vqgan"
VERSION = 1
LIGHTNING_KEY = "deid_vqgan"
STAGES = ("first_stage", "cond_stage", "transformer", "discriminator")
_BUILDERS: dict[str, tuple[Any, Any]] = {
    "first_stage": (VQConfig, VQAutoencoder),
    "cond_stage": (VQConfig, VQAutoencoder),
    "transformer": (GPTConfig, GPT),
    "discriminator": (DiscriminatorConfig, NLayerDiscriminator),
}


def stage_entry(model: nn.Module) -> dict[str, Any]:
    """{"config", "state_dict"} of one network (tensors detached, on the CPU)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"config": model.config.to_dict(), "state_dict": state}


def make_bundle(
    *,
    first_stage: nn.Module | None = None,
    cond_stage: nn.Module | None = None,
    transformer: nn.Module | None = None,
    discriminator: nn.Module | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A checkpoint dict in our format from whichever networks are given."""
    networks = {
        "first_stage": first_stage,
        "cond_stage": cond_stage,
        "transformer": transformer,
        "discriminator": discriminator,
    }
    bundle: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    for name, net in networks.items():
        bundle[name] = None if net is None else stage_entry(net)
    bundle["meta"] = dict(meta or {})
    return bundle


def save_bundle(bundle: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a bundle atomically (the file appears complete or not at all)."""
    from deid.media.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(bundle, tmp)
    return Path(path)


@dataclass
class VQGANModels:
    """The networks of a checkpoint (None where absent), in eval mode.

    first_stage.encode_to_indices(x)      float [B,3,H,W] in [-1,1] -> long [B,h,w]
    first_stage.decode_indices(idx)       long [B,h,w] -> [B,3,H,W]
    cond_stage.encode_to_indices(onehot)  float [B,L,H,W] -> long [B,h,w]
    transformer(tokens)                   long [B,T] -> logits [B,T,V]
    """

    first_stage: VQAutoencoder | None = None
    cond_stage: VQAutoencoder | None = None
    transformer: GPT | None = None
    discriminator: NLayerDiscriminator | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def networks(self) -> dict[str, nn.Module]:
        return {n: getattr(self, n) for n in STAGES if getattr(self, n) is not None}

    def to(self, device: str | torch.device) -> VQGANModels:
        for net in self.networks().values():
            net.to(device)
        return self


def _read(source: str | os.PathLike[str] | dict[str, Any], map_location: Any) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    path = Path(source)
    if not path.is_file():
        raise BadInputError(path, "no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise DeidError(
            f"{path}: not a deid VQGAN checkpoint (it needs code to unpickle; an official "
            "taming checkpoint?). Convert it first: python -m vqgan.convert_official "
            f"{path} --config PROJECT.yaml -o OUT.pt"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise BadInputError(path, f"unreadable checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(payload, dict):
        raise BadInputError(path, "not a deid VQGAN checkpoint (no dict inside)")
    return payload


def bundle_of(payload: dict[str, Any], source: str = "checkpoint") -> dict[str, Any]:
    """The bundle inside a loaded file: ours directly, or a Lightning `.ckpt`'s `deid_vqgan`."""
    if payload.get("format") == FORMAT:
        bundle = payload
    elif isinstance(payload.get(LIGHTNING_KEY), dict):
        bundle = payload[LIGHTNING_KEY]
    elif "deid_config" in payload:
        raise DeidError(
            f"{source}: a deid Lightning checkpoint without a '{LIGHTNING_KEY}' entry "
            "(written by a module that does not store its VQGAN networks)"
        )
    else:
        raise DeidError(f"{source}: not a deid VQGAN checkpoint (no 'format': '{FORMAT}')")
    version = bundle.get("version")
    if version != VERSION:
        raise DeidError(f"{source}: deid-vqgan format version {version}, this code reads {VERSION}")
    return bundle


def build_stage(name: str, entry: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Rebuild one network from its {"config", "state_dict"} entry, loading strictly."""
    config_cls, model_cls = _BUILDERS[name]
    try:
        config = config_cls.from_dict(dict(entry["config"]))
        model = model_cls(config)
        model.load_state_dict(entry["state_dict"], strict=True)
    except (KeyError, TypeError) as err:
        raise DeidError(f"{source}: {name} entry is malformed ({err})") from None
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise DeidError(
            f"{source}: {name} weights do not fit its config: {' '.join(lines[:4])}"
        ) from None
    return model.eval()


def load_checkpoint(
    source: str | os.PathLike[str] | dict[str, Any],
    *,
    map_location: str | torch.device = "cpu",
    stages: tuple[str, ...] = STAGES,
) -> VQGANModels:
    """Networks of a deid VQGAN checkpoint (converted official, or trained by deid), eval mode.

    `source` is a path or an already loaded dict; `stages` limits what is built.
    """
    name = str(source) if not isinstance(source, dict) else "checkpoint"
    bundle = bundle_of(_read(source, map_location), name)
    models = VQGANModels(meta=dict(bundle.get("meta") or {}))
    for stage in stages:
        entry = bundle.get(stage)
        if entry is not None:
            setattr(models, stage, build_stage(stage, entry, name).to(map_location))
    return models
