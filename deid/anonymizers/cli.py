"""`deid anonymize INPUT... [-o OUTPUT] [options]`: the anonymize.py config behind plain flags.

Composes `conf/anonymize.yaml` (the same defaults as `python anonymize.py`), applies the flags
and any `--set KEY=VALUE` Hydra overrides, and runs `deid.anonymizers.runner.anonymize`.
Without `-o`: one file `x.jpg` -> `x_anonymized.jpg` beside it, one folder `d/` ->
`d_anonymized/`, several inputs -> `./anonymized/`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from deid.anonymizers.fallback import FALLBACK_MODES
from deid.anonymizers.settings import TARGETS, method_names
from deid.errors import DeidError
from deid.faces.detectors.named import detector_names
from deid.hydra_entry import compose_redacted


def default_output(inputs: list[str]) -> str:
    if len(inputs) != 1:
        return "anonymized"
    path = Path(inputs[0])
    if path.is_dir():
        return str(path.resolve().parent / f"{path.resolve().name}_anonymized")
    return str(path.with_name(f"{path.stem}_anonymized{path.suffix}"))


def parser() -> argparse.ArgumentParser:
    methods, detectors = ", ".join(method_names()), ", ".join(detector_names())
    p = argparse.ArgumentParser(
        prog="deid anonymize",
        description="Anonymize every face (or person) in images, videos and folders (recursive).",
        epilog=f"methods: {methods}\ndetectors: {detectors} (join with + for a union)\n"
        "keys: --key @FILE or --key env:VARIABLE (or set DEID_KEY) keep the secret off the "
        "command line",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, video or folder")
    p.add_argument("-o", "--output", help="output folder, or a file name for one image/video")
    p.add_argument(
        "--anonymizer",
        default="blur",
        metavar="METHOD",
        help=f"default: blur (sigma 1/8 of each face); one of {methods}",
    )
    p.add_argument("--ckpt", help="checkpoint for trained methods (--anonymizer ciagan)")
    p.add_argument(
        "--detector",
        default="default",
        metavar="NAME",
        help=f"default: default (mediapipe+mtcnn); one of {detectors}, or a+b for a union",
    )
    p.add_argument("--identity", type=int, help="one fixed target identity for every face")
    p.add_argument(
        "--key",
        help="secret key for keyed fake identities: @FILE, env:VARIABLE or hex (a key typed "
        "on the command line shows in `ps` and the shell history); default $DEID_KEY",
    )
    p.add_argument("--camera", help="camera/session id (default: each video, each photo folder)")
    p.add_argument("--target", choices=TARGETS, default="face")
    p.add_argument("--fallback", choices=FALLBACK_MODES, default="blur")
    p.add_argument("--strict", action="store_true", help="exit 3 unless every face was anonymized")
    p.add_argument(
        "--audit",
        action="store_true",
        help="re-find the faces of the originals with an independent detector: report faces "
        "not anonymized and output faces still matching their source",
    )
    p.add_argument("--audit-detector", metavar="NAME", help="default: auto (independent)")
    p.add_argument("--audit-threshold", type=float, help="squared L2 distance (default 1.2)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs an earlier run completed")
    p.add_argument("--detect-scale", type=float, help="detect on a copy scaled by this")
    p.add_argument("--detect-every", type=int, help="detect on every k-th video frame only")
    p.add_argument("--workers", type=int, help="detection threads (default: one per core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any Hydra override of conf/anonymize.yaml, e.g. --set video.max_gap=10",
    )
    return p


FLAG_SETTINGS = {  # flag attribute -> config key
    "ckpt": "ckpt",
    "identity": "identity",
    "key": "key",
    "camera": "camera",
    "audit_detector": "audit_options.detector",
    "audit_threshold": "audit_options.threshold",
    "detect_scale": "detect_scale",
    "detect_every": "detect_every",
    "workers": "workers",
}


def compose_config(args: argparse.Namespace) -> DictConfig:
    if args.anonymizer not in method_names():
        raise DeidError(
            f"unknown method --anonymizer {args.anonymizer}; known: {', '.join(method_names())}"
        )
    union = "+" in args.detector
    detector = "default" if union else args.detector
    overrides = [f"model={args.anonymizer}", f"detector={detector}", *args.set]
    cfg = compose_redacted("anonymize", overrides, flag="--set")
    if union:
        cfg.detector = OmegaConf.create({"name": args.detector})
    # Values are set after composing so paths and keys need no override-grammar quoting.
    cfg["in"] = list(args.inputs)
    cfg.out = args.output or default_output(args.inputs)
    for name, key in FLAG_SETTINGS.items():
        value = getattr(args, name)
        if value is not None:
            OmegaConf.update(cfg, key, value)
    cfg.target, cfg.fallback = args.target, args.fallback
    cfg.strict = bool(args.strict or cfg.strict)
    cfg.audit = bool(args.audit or cfg.audit)
    cfg.overwrite = bool(args.overwrite or cfg.overwrite)
    if args.no_progress:
        cfg.progress = False
    with open_dict(cfg):
        cfg.interface = "cli"  # error hints in flag syntax (--ckpt PATH, not ckpt=PATH)
    return cfg


def main(argv: list[str] | None = None) -> int:
    from deid.anonymizers.runner import anonymize

    args = parser().parse_args(argv)
    anonymize(compose_config(args))
    return 0


if __name__ == "__main__":
    import sys

    from deid.cli_utils import run_cli

    sys.exit(run_cli(main))
