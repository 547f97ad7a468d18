"""Glue for the thin `@hydra.main` entry points: user errors become one line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from deid.errors import DeidError


def run_task(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Call `task(cfg)`; a `DeidError` prints `error: ...` and exits 2 (no traceback)."""
    try:
        return task(cfg)
    except DeidError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


def not_implemented(what: str, issue: str) -> DeidError:
    return DeidError(f"{what} is not implemented yet (planned in {issue}); see README.md")


def run_dir_of(cfg: DictConfig) -> Path:
    """The Hydra run folder (or `cfg.paths.output_dir` when called without Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return Path(cfg.paths.output_dir)


def instantiate_unwrapped(spec: Any, what: str) -> Any:
    """`hydra.utils.instantiate(spec)`, with the object's own one-line `DeidError` surfaced
    (Hydra wraps constructor errors in a multi-line InstantiationException)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(spec)
    except InstantiationException as err:
        if isinstance(err.__cause__, DeidError):
            raise err.__cause__ from None
        cause = err.__cause__ if err.__cause__ is not None else err
        message = " ".join(str(cause).split())
        raise DeidError(f"cannot build the {what}: {type(cause).__name__}: {message}") from None
