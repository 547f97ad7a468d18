"""Layout checks shared by the readers: one-line errors naming what is missing and where.

Missing listed images are an error by default: every number this project compares with a paper
is defined on the full official list (6,000 LFW pairs, the CIAGAN identities' images), and a
silently smaller set gives numbers that look comparable but are not. `allow_missing=True`
turns the error into one warning with the same count, for deliberate partial copies.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from deid.errors import DatasetLayoutError

log = logging.getLogger("deid.datasets")


def require_path(root: Path, relative: str, layout: str, folder: bool = False) -> Path:
    """`root/relative`, or a DatasetLayoutError naming it when absent."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(
            f"{root}: dataset root not found (expected the {layout} layout, see data/README.md)"
        )
    path = root / relative
    if not (path.is_dir() if folder else path.is_file()):
        what = f"{relative.rstrip('/')}/" if folder else relative
        raise DatasetLayoutError(
            f"{root}: missing {what} (expected the {layout} layout, see data/README.md)"
        )
    return path


def file_names(folder: Path) -> set[str]:
    """Names in one folder, read once: far faster than one stat per listed image."""
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def check_missing(
    missing: Sequence[str], total: int, where: Path, allow_missing: bool = False
) -> None:
    """Raise (or warn once, when `allow_missing`) about listed images that are not on disk."""
    if not missing:
        return
    message = f"{where}: {len(missing)} of {total} listed images are missing (first: {missing[0]})"
    if not allow_missing:
        raise DatasetLayoutError(
            f"{message}; restore them, or pass allow_missing=True to use the rest"
        )
    log.warning("%s; using the %d present", message, total - len(missing))
