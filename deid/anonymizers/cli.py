"""`deid anonymize INPUT... [-o OUTPUT] [options]`: the anonymize.py config behind plain flags.

Composes `conf/anonymize.yaml` (the same defaults as `python anonymize.py`), applies the flags
and any `--set KEY=VALUE` Hydra overrides, and runs `deid.anonymizers.runner.anonymize`.
Without `-o`: one file `x.jpg` -> `x_anonymized.jpg` beside it, one folder `d/` ->
`d_anonymized/`, several inputs -> `./anonymized/`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from deid.anonymizers.fallback import FALLBACK_MODES
from deid.anonymizers.runner import TARGETS, anonymize
from deid.errors import DeidError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def default_output(inputs: list[str]) -> str:
    if len(inputs) != 1:
        return "anonymized"
    path = Path(inputs[0])
    if path.is_dir():
        return str(path.resolve().parent / f"{path.resolve().name}_anonymized")
    return str(path.with_name(f"{path.stem}_anonymized{path.suffix}"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deid anonymize",
        description="Anonymize every face in images, videos and folders (recursive).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, video or folder")
    p.add_argument("-o", "--output", help="output folder, or a file name for one image/video")
    p.add_argument("--anonymizer", default="blur17", help="any conf/model/*.yaml name")
    p.add_argument("--ckpt", help="checkpoint for trained methods (--anonymizer ciagan)")
    p.add_argument("--detector", default="dlib_hog", help="any conf/detector/*.yaml name")
    p.add_argument("--identity", type=int, help="one fixed target identity for every face")
    p.add_argument(
        "--key",
        help="secret key for keyed fake identities: hex, @file or a file (prefer @file: "
        "a key typed on the command line shows in `ps` and the shell history)",
    )
    p.add_argument("--camera", help="camera/session id (default: each file's relative path)")
    p.add_argument("--target", choices=TARGETS, default="face")
    p.add_argument("--fallback", choices=FALLBACK_MODES, default="blur")
    p.add_argument("--strict", action="store_true", help="exit 3 unless every face was anonymized")
    p.add_argument("--audit", action="store_true", help="check outputs for faces still matching")
    p.add_argument("--audit-threshold", type=float, help="squared L2 distance (default 1.2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any Hydra override of conf/anonymize.yaml, e.g. --set video.max_gap=10",
    )
    return p


def compose_config(args: argparse.Namespace) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    overrides = [f"model={args.anonymizer}", f"detector={args.detector}", *args.set]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="anonymize", overrides=overrides)
    except HydraException as err:  # unknown --anonymizer/--detector name or a bad --set
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DeidError(f"config: {first}") from None
    # Values are set after composing so paths and keys need no override-grammar quoting.
    cfg["in"] = list(args.inputs)
    cfg.out = args.output or default_output(args.inputs)
    for name in ("ckpt", "identity", "key", "camera", "audit_threshold"):
        value = getattr(args, name)
        if value is not None:
            OmegaConf.update(cfg, name, value)
    cfg.target, cfg.fallback = args.target, args.fallback
    cfg.strict = bool(args.strict or cfg.strict)
    cfg.audit = bool(args.audit or cfg.audit)
    if args.no_progress:
        cfg.progress = False
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    anonymize(compose_config(args))
    return 0


if __name__ == "__main__":
    import sys

    from deid.cli_utils import run_cli

    sys.exit(run_cli(main))
