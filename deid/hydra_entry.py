"""Glue for the thin `@hydra.main` entry points: user errors become one line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from deid.errors import DeidError, unknown_name

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def known_names(group: str) -> list[str]:
    """The config names of a `conf/<group>/` folder, sorted."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


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
