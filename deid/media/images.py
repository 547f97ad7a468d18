"""Read any common image as RGB uint8; write images atomically.

Conversions `read_image` applies, in order:
  * EXIF orientation (all eight values) is applied, so pixels come upright;
  * an embedded ICC profile other than sRGB (CMYK print profiles, Display P3, Adobe RGB) is
    converted to sRGB with LittleCMS; an unreadable profile falls back to the plain conversion;
  * 16-bit samples (I;16 PNG/TIFF, 16-bit PGM read as "I") are scaled by 255/65535 and rounded,
    not clipped; 32-bit float ("F") images are taken as [0, 1];
  * CMYK JPEGs, Adobe-inverted ones included (Pillow undoes the inversion), become RGB;
  * palette and grayscale images become RGB; GIF/animated images give their first frame;
  * alpha (RGBA, LA, palette or tRNS transparency) is composited over black, i.e. each colour
    is multiplied by its alpha. Black rather than white or dropping alpha because: what is
    invisible in the source stays invisible (dropping alpha would expose whatever colour a
    transparent pixel hides, a leak in a de-identification tool), it is premultiplied alpha,
    the one convention that needs no arbitrary background colour, and zero is the neutral value
    models are padded with.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from deid.errors import BadInputError
from deid.media.atomic import AtomicPath, atomic_write
from deid.media.files import check_input_file

# Extension -> Pillow format for writing.
IMAGE_WRITE_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".gif": "GIF",
    ".ppm": "PPM",
}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read any common image as a writable RGB uint8 array (H, W, 3), EXIF orientation applied.

    Raises `BadInputError` (one line: path and reason) for a missing, empty, truncated, corrupt
    or non-image file and for a folder; never returns a partly decoded image.
    """
    path = Path(path)
    check_input_file(path)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by some other code): truncated "
            "images will not be detected",
            RuntimeWarning,
            stacklevel=2,
        )
    try:
        with Image.open(path) as img:
            img.load()
            upright = ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise BadInputError(path, "not an image (unrecognised format)") from None
    except Image.DecompressionBombError as err:
        raise BadInputError(path, f"image too large to decode safely ({err})") from None
    except _DECODE_ERRORS as err:
        raise BadInputError(path, f"truncated or corrupt image ({err})") from None
    try:
        return _to_rgb(upright)
    except ValueError as err:  # a colour mode Pillow cannot convert (e.g. LAB TIFF)
        raise BadInputError(path, f"unsupported colour mode {upright.mode} ({err})") from None


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    wide = np.clip(values.astype(np.float32), 0, 65535)
    return np.rint(wide * (255.0 / 65535.0)).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _to_srgb(img: Image.Image) -> Image.Image:
    """Convert through an embedded ICC profile to sRGB; unchanged when there is none/sRGB."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK"):
        return img
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower().replace(" ", ""):
            return img
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(
            img, profile, ImageCms.createProfile("sRGB"), outputMode=out_mode
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img  # broken or unsupported profile: plain conversion below
    return converted if converted is not None else img


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        return _gray_to_rgb(_scale_16bit(np.asarray(img)))
    if mode == "F":
        gray = np.rint(np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0) * 255.0)
        return _gray_to_rgb(gray.astype(np.uint8))
    img = _to_srgb(img)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        rgb = rgba[:, :, :3] * (rgba[:, :, 3:] / 255.0)
        return np.rint(rgb).astype(np.uint8)
    return np.array(img.convert("RGB"), dtype=np.uint8)


def _to_pil(image: np.ndarray) -> Image.Image:
    image = np.asarray(image)
    if image.dtype == bool and image.ndim == 2:
        return Image.fromarray(image.astype(np.uint8) * 255, mode="L")
    if image.dtype != np.uint8:
        raise ValueError(f"write_image expects uint8 pixels (or a bool mask), got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(image), mode="L")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return Image.fromarray(
            np.ascontiguousarray(image), mode="RGBA" if image.shape[2] == 4 else "RGB"
        )
    raise ValueError(f"write_image expects (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")


def write_image(path: str | os.PathLike[str], image: np.ndarray, quality: int = 95) -> Path:
    """Write an RGB/RGBA/grayscale uint8 array (or a bool mask) atomically; returns the path.

    The format comes from the extension (see `IMAGE_WRITE_FORMATS`); `quality` applies to JPEG
    and WebP. Parent folders are created. If encoding fails the target is left as it was and no
    temp file remains. JPEG/BMP cannot hold alpha: pass RGB for them.
    """
    path = Path(path)
    fmt = IMAGE_WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = " ".join(sorted(IMAGE_WRITE_FORMATS))
        raise BadInputError(
            path, f"cannot write images with extension {path.suffix!r} (use {known})"
        )
    pil = _to_pil(image)
    if pil.mode == "RGBA" and fmt in ("JPEG", "BMP", "PPM"):
        raise ValueError(f"{path}: {fmt} has no alpha channel; pass an (H, W, 3) image")
    options: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = int(quality)
    with AtomicPath(path) as tmp:
        pil.save(tmp, format=fmt, **options)
    return path


def write_png_fast(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an RGB or grayscale uint8 PNG atomically with OpenCV's fast encoder (level 1):
    for the many small crops and masks of preprocessing. Parent folders are created."""
    path = Path(path)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_write(path, "wb") as handle:
        handle.write(data.tobytes())
    return path
