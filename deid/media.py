"""Image and video reading/writing (minimal first version; extended by the media work)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deid.errors import BadInputError


def read_image(path: str | Path) -> np.ndarray:
    """Read any common image as RGB uint8 (H, W, 3), EXIF orientation applied."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such file")
    if path.is_dir():
        raise BadInputError(path, "is a folder, not an image")
    if path.stat().st_size == 0:
        raise BadInputError(path, "empty file")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"))
    except UnidentifiedImageError:
        raise BadInputError(path, "not an image (unrecognised format)") from None
    except OSError as err:
        raise BadInputError(path, f"truncated or corrupt image ({err})") from None
