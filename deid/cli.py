"""The `deid` console command: one front door to the project's tools.

`deid weights list`, `deid faces detect IMAGE...`, `deid anonymize INPUT... -o OUT`,
`deid demo`; each subcommand is the same program as `python -m <module>` (`python -m demo` for
the demo, which sits above the core and is only named here), so both spellings behave
identically.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "weights": ("deid.weights", "list or verify the offline model zoo"),
    "faces": ("deid.faces.cli", "detect faces, landmarks and identity embeddings"),
    "anonymize": ("deid.anonymizers.cli", "anonymize every face in images, videos and folders"),
    "demo": ("demo.main", "run the end-to-end demo on the embedded demo data"),
    "fetch-demo": ("deid.datasets.demo", "fetch the 5-celebrity demo photos into data/demo"),
}


def _usage() -> str:
    lines = ["usage: deid COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    from deid.cli_utils import run_cli

    return run_cli(lambda: module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
