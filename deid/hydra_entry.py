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
