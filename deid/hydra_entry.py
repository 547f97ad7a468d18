"""Glue for the thin `@hydra.main` entry points: user errors become one line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from deid.errors import DeidError, unknown_name

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def run_task(task: Callable[[Any], Any], cfg: DictConfig | Any) -> Any:
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


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The option names of a config group (`conf/<group>/*.yaml`), sorted."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def check_choices(argv: Sequence[str], group: str, conf_dir: Path = CONF_DIR) -> None:
    """Refuse, in one line, a command-line choice of `group` that names no config.

    Hydra's own message for an unknown option is a multi-line composition error printed after
    start-up; entry points call this on `sys.argv` first (sweeps `a,b` are checked per value).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:  # noqa: BLE001 - malformed overrides: Hydra itself will say what is wrong
        return
    known = group_options(group, conf_dir)
    for override in overrides:
        if override.key_or_group.lstrip("+~") != group or override.is_delete():
            continue
        values = (
            list(override.sweep_string_iterator())
            if override.is_sweep_override()
            else [override.get_value_element_as_str()]
        )
        for value in values:
            if value not in known and value != "null":
                raise unknown_name(f"{group}", value, known)
