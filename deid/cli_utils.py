"""Shared CLI glue: turn `DeidError` into a one-line message and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from deid.errors import DeidError


def run_cli(main: Callable[[], int | None]) -> int:
    """Run `main`; a `DeidError` prints `error: <message>` to stderr and returns its exit code."""
    try:
        code = main()
    except DeidError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
