"""Name -> anonymizer factory, so configs and CLIs pick methods by name (`model=blur9`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from deid.anonymizers import baselines
from deid.anonymizers.base import Anonymizer
from deid.errors import DeidError

Factory = Callable[..., Anonymizer]

BASELINES: dict[str, Factory] = {
    "original": baselines.IdentityAnonymizer,
    "blur": baselines.face_blur,
    "blur9": functools.partial(baselines.blur, 9),
    "blur17": functools.partial(baselines.blur, 17),
    "blur9_px": functools.partial(baselines.blur, 9, reference_face=None),
    "blur17_px": functools.partial(baselines.blur, 17, reference_face=None),
    "pixel8": functools.partial(baselines.pixelation, 8),
    "pixel16": functools.partial(baselines.pixelation, 16),
    "blackbox": baselines.blackbox,
    "maskout": baselines.MaskOutAnonymizer,
}


def build_anonymizer(name: str, **options: Any) -> Anonymizer:
    """Build a baseline by name; methods with weights come through their own configs."""
    try:
        factory = BASELINES[name]
    except KeyError:
        known = ", ".join(sorted(BASELINES))
        raise DeidError(f"unknown anonymizer {name!r}; known: {known}") from None
    return factory(**options)
