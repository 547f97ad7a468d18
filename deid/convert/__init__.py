"""One-off converters from foreign weight formats into plain PyTorch state dicts.

They run once, from `deid.weights.resolve`, on files that pip packages ship (so nothing is
downloaded), and write `torch.save`d dicts of plain tensors so `torch.load(weights_only=True)`
can read them without running pickled code.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn


def save_state_dict(state: OrderedDict[str, torch.Tensor], dst: Path) -> None:
    """Write `state` so that equal weights give byte-identical files.

    `torch.save` names the zip archive after the target file's stem, so saving through an
    in-memory buffer keeps the bytes (and the pinned sha256) independent of the file name.
    """
    plain = OrderedDict(
        (key, value.detach().cpu().contiguous().clone()) for key, value in state.items()
    )
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    Path(dst).write_bytes(buffer.getvalue())


def complete_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module
) -> OrderedDict[str, torch.Tensor]:
    """Order `state` like `model`'s own, prove every key and shape matches, and load it."""
    reference = model.state_dict()
    missing = [key for key in reference if key not in state]
    unexpected = [key for key in state if key not in reference]
    if missing or unexpected:
        raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    ordered = OrderedDict((key, state[key]) for key in reference)
    for key, value in ordered.items():
        if value.shape != reference[key].shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)} != {tuple(reference[key].shape)}")
    model.load_state_dict(ordered, strict=True)
    return ordered
