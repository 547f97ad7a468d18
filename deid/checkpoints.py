"""Loading training checkpoints, for every method: safely, with one-line errors.

A checkpoint of `train.py` is a Lightning checkpoint: `state_dict` (the module's weights),
`hyper_parameters` (the module's constructor arguments: enough to rebuild its networks), and
`deid_config` (the resolved run config, see `deid.training`), whose `task_name` is the
experiment's name. Everything is loaded with `torch.load(..., weights_only=True)`: no pickled
code runs. A method's loader names the command that makes its checkpoints, so a missing or
wrong file is one line that says what to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deid.errors import DeidError, MissingWeightError

CONFIG_KEY = "deid_config"  # the resolved run config `deid.training` stores in checkpoints


def load_checkpoint(
    path: str | Path | None, what: str, command: str, setting: str = "ckpt"
) -> dict[str, Any]:
    """The checkpoint at `path` (a plain dict). `what` names the model ("CIAGAN"), `command`
    the one that trains it (`python train.py experiment=ciagan_demo`), `setting` the config
    key that passes the path."""
    if path is None:
        raise DeidError(f"{what} needs a checkpoint: add {setting}=<run>/checkpoints/last.ckpt")
    path = Path(path)
    if not path.is_file():
        raise MissingWeightError(
            f"{what} checkpoint {path} not found: train one with `{command}` and pass "
            "<run>/checkpoints/last.ckpt"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or unsafe content
        raise DeidError(
            f"{path}: not a loadable {what} checkpoint ({type(err).__name__})"
        ) from None
    if not isinstance(state, dict):
        raise DeidError(f"{path}: not a loadable {what} checkpoint (not a dict)")
    return state


def submodule_weights(state: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """The weights of one submodule (`generator`, `identity_net`) with the prefix removed;
    `state` is a checkpoint or a bare state dict."""
    weights = state.get("state_dict", state)
    start = f"{prefix}."
    return {k[len(start) :]: v for k, v in weights.items() if k.startswith(start)}


def hyper_parameters(state: dict[str, Any]) -> dict[str, Any]:
    """The module's constructor arguments stored in the checkpoint ({} when absent)."""
    return dict(state.get("hyper_parameters") or {})


def experiment_name(state: dict[str, Any]) -> str | None:
    """The experiment (run task) that trained the checkpoint, e.g. `ciagan_ablation_faces`."""
    name = (state.get(CONFIG_KEY) or {}).get("task_name")
    return str(name) if name else None
