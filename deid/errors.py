"""User-facing errors: one line that names the thing and the reason, never a traceback.

Library code raises these for user mistakes (bad files, missing weights, wrong layouts);
CLIs catch `DeidError` and exit with code 2 (see `deid.cli_utils.run_cli`).
"""

from __future__ import annotations


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
