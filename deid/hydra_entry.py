"""Glue for the thin `@hydra.main` entry points: user errors become one line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from deid.errors import DeidError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def known_names(group: str) -> list[str]:
    """The config names of a `conf/<group>/` folder, sorted."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def unknown_name(what: str, name: object, known: list[str] | tuple[str, ...]) -> DeidError:
    """The one-line error for a name that is not one of `known`."""
    return DeidError(f"unknown {what} {name!r}; known: {', '.join(known)}")


def _redact(text: str, overrides: list[str]) -> str:
    """`text` with the value of every `key=value` override replaced by `...`: a mistyped
    `key=SECRET` must never echo the secret."""
    for override in sorted(overrides, key=len, reverse=True):
        name, sep, value = override.partition("=")
        if sep and value:
            text = text.replace(override, f"{name}=...").replace(value, "...")
    return text


def compose_redacted(config_name: str, overrides: list[str], flag: str = "") -> DictConfig:
    """Compose `conf/<config_name>.yaml` with `overrides`; a bad override is one line naming
    the key and not its value (`DeidError`)."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    except Exception as err:  # Hydra's and OmegaConf's errors: one line, values hidden
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        first = lines[0] if lines else type(err).__name__
        if first.startswith("Could not override") and len(lines) > 2:
            first = f"{first} {lines[2]}"  # "Key 'x' is not in struct"
        prefix = f"{flag} " if flag else ""
        raise DeidError(f"config: {prefix}{_redact(first, overrides)}") from None


def check_overrides(config_name: str, argv: list[str]) -> None:
    """Before `@hydra.main` runs: compose with the command line's overrides and exit 2 with
    one redacted line when one is bad (Hydra's own message would echo `key=value`)."""
    overrides = [a for a in argv if "=" in a and not a.startswith(("-", "hydra."))]
    if any(a.startswith("hydra/") for a in overrides):
        return  # launcher choices: Hydra's own job
    try:
        compose_redacted(config_name, [a for a in overrides if not a.startswith("hydra/")])
    except DeidError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


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
