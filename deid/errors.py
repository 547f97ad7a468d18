"""User-facing errors: one line that names the thing and the reason, never a traceback.

Library code raises these for user mistakes (bad files, missing weights, wrong layouts);
CLIs catch `DeidError` and exit with code 2 (see `deid.cli_utils.run_cli`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


class DeidError(Exception):
    """An error caused by the user's input or environment, explained in one line."""

    exit_code = 2


class BadInputError(DeidError):
    """An input file is missing, empty, truncated or not an image/video."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MissingWeightError(DeidError):
    """A named weight could not be found offline."""


class WeightChecksumError(DeidError):
    """A weight file exists but its sha256 is not the expected one."""


class DatasetLayoutError(DeidError):
    """A dataset root does not follow the official on-disk layout."""


def unknown_name(
    what: str, name: object, known: Iterable[str], error: type = DeidError
) -> Exception:
    """The one-line error for a name missing from a table: `unknown WHAT 'NAME'; known: a, b`.

    `known` is listed in the order given (sort it where that reads better); `error` is the
    exception class (a `DeidError` for user input, `ValueError` for programming mistakes).
    """
    return error(f"unknown {what} {name!r}; known: {', '.join(str(k) for k in known)}")


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """`table[name]`, or the `unknown_name` error listing the table's keys in sorted order."""
    try:
        return table[name]
    except KeyError:
        raise unknown_name(what, name, sorted(table)) from None
