"""Find and read `results.json` files: run folders, single files or whole sweep folders."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from deid.errors import BadInputError, DeidError

RESULTS_FILE = "results.json"
DEFAULT_OUT = Path("outputs/report")


def _read_results(path: Path) -> dict[str, Any]:
    """One results.json, checked just enough that the tables can trust its shape."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BadInputError(path, f"not valid JSON ({err.msg}, line {err.lineno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BadInputError(path, f"cannot read results ({err})") from None
    if not isinstance(data, dict):
        raise BadInputError(path, "not a results file (top level is not a JSON object)")
    if not isinstance(data.get("method"), str) or not data["method"]:
        raise BadInputError(path, "not a results file (no 'method' name)")
    for key in ("metrics", "dataset"):
        if not isinstance(data.get(key, {}), dict):
            raise BadInputError(path, f"not a results file ('{key}' is not an object)")
    for name, section in data.get("metrics", {}).items():
        if not isinstance(section, dict):
            raise BadInputError(path, f"not a results file (metrics.{name} is not an object)")
    data["_source"] = str(path)
    return data


def _find_results(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BadInputError(path, "no such file or folder")
    found = sorted(p for p in path.rglob(RESULTS_FILE) if p.is_file())
    if not found:
        raise BadInputError(path, f"no {RESULTS_FILE} found in this folder or below it")
    return found


def load_results(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Read every results.json named by `paths` (run folders, files, or sweep folders).

    Each dict gets `_source` (the file it came from). A path without results or a malformed
    file raises `BadInputError` naming the file.
    """
    files: list[Path] = []
    for raw in paths:
        for file in _find_results(Path(raw)):
            if file.resolve() not in {f.resolve() for f in files}:
                files.append(file)
    if not files:
        raise DeidError("no results given: name at least one run folder or results.json")
    return [_read_results(file) for file in files]


def default_out_dir(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """The inputs' common folder (a results.json counts as its folder), else outputs/report."""
    folders = [Path(p).resolve() for p in paths]
    folders = [p.parent if p.is_file() else p for p in folders]
    try:
        common = Path(os.path.commonpath(folders))
    except ValueError:  # different drives, or nothing given
        return DEFAULT_OUT
    return DEFAULT_OUT if common == Path(common.anchor) else common
