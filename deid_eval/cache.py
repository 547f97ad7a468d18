"""Features and detections of the original images, cached under a hash of what produced them.

Evaluating a second model on the same dataset reuses the originals' detections, embeddings and
FID features instead of recomputing them (stylegan2-ada's metric cache idea). The key covers the
dataset (file list, sizes, mtimes), the extractor (name + weight sha256) and its options, so a
changed file or weight never returns a stale entry.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from deid.media import atomic_write


def fingerprint_files(paths: list[Path]) -> str:
    """A hash of the file list with sizes and modification times (cheap, no reading)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_key(**parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class FeatureCache:
    """A folder of `<kind>-<key>.pt` files holding tensors/lists/dicts (weights_only loading)."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled
        self.hits: list[str] = []
        self.misses: list[str] = []

    def _path(self, kind: str, key: str) -> Path:
        return self.root / f"{kind}-{key}.pt"

    def load(self, kind: str, key: str) -> Any | None:
        path = self._path(kind, key)
        if not (self.enabled and path.is_file()):
            self.misses.append(kind)
            return None
        self.hits.append(kind)
        return torch.load(path, map_location="cpu", weights_only=True)

    def save(self, kind: str, key: str, value: Any) -> None:
        if not self.enabled:
            return
        buffer = io.BytesIO()
        torch.save(value, buffer)
        target = self._path(kind, key)
        with atomic_write(target, "wb") as handle:
            handle.write(buffer.getvalue())

    def get_or_compute(self, kind: str, key: str, compute: Any) -> Any:
        value = self.load(kind, key)
        if value is None:
            value = compute()
            self.save(kind, key, value)
        return value
