"""Shared fixtures: real images the tests run real models on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_IDENTITIES = ("ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling")


@pytest.fixture(scope="session")
def demo_root() -> Path:
    """`data/demo`: the 5-celebrity photos (train/val/<identity>/*.jpg), fetched by setup."""
    root = REPO / "data" / "demo"
    missing = [
        f"{split}/{name}"
        for split in ("train", "val")
        for name in DEMO_IDENTITIES
        if not any((root / split / name).glob("*.jpg"))
    ]
    if missing:
        pytest.fail(
            f"demo face set missing or incomplete at {root} (no photos in {', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); run `make setup`",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """skimage's astronaut, 512x512 RGB uint8 (read-only: tests must not modify it)."""
    from skimage import data

    image = data.astronaut()
    image.setflags(write=False)
    return image
