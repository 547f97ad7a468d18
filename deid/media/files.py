"""Media kinds by extension, input checks, and folder expansion for the CLIs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, NamedTuple

from deid.errors import BadInputError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
    | {".ppm", ".pgm", ".pbm", ".pnm"}
)
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}
)

MediaKind = Literal["image", "video"]


def is_image(path: str | os.PathLike[str]) -> bool:
    """True when the extension is a readable image format (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: str | os.PathLike[str]) -> bool:
    """True when the extension is a video container (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def media_kind(path: str | os.PathLike[str]) -> MediaKind | None:
    if is_image(path):
        return "image"
    if is_video(path):
        return "video"
    return None


def check_input_file(path: Path) -> None:
    """Raise `BadInputError` unless `path` is an existing, non-empty file."""
    if not path.exists():
        raise BadInputError(path, "no such file")
    if path.is_dir():
        raise BadInputError(path, "is a folder, not a file")
    if path.stat().st_size == 0:
        raise BadInputError(path, "empty file (0 bytes)")


class MediaFile(NamedTuple):
    """One input found by `iter_media`."""

    path: Path  # the file to read
    relpath: Path  # relative to the folder argument it was found under (its name for a file)
    kind: MediaKind


def _walk(root: Path, recursive: bool) -> Iterator[Path]:
    """Files under `root` in sorted order, hidden files and folders skipped."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def iter_media(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    recursive: bool = True,
    kinds: Iterable[MediaKind] = ("image", "video"),
) -> Iterator[MediaFile]:
    """Expand files and folders into media files, in argument order, folders sorted.

    A folder yields every image/video under it (its subfolders too when `recursive`), each with
    its path relative to that folder, so a CLI can mirror the layout in an output folder; hidden
    files and folders (including unfinished atomic-write temps) and other extensions are skipped.
    A file argument is taken as given and must be an image or video of an accepted kind.
    A missing path or an unsupported file argument raises `BadInputError`.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    wanted = set(kinds)
    for arg in paths:
        root = Path(arg)
        if root.is_dir():
            for path in _walk(root, recursive):
                kind = media_kind(path)
                if kind in wanted:
                    yield MediaFile(path, path.relative_to(root), kind)
            continue
        if not root.exists():
            raise BadInputError(root, "no such file or folder")
        kind = media_kind(root)
        if kind not in wanted:
            accepted = sorted(
                (IMAGE_EXTENSIONS if "image" in wanted else set())
                | (VIDEO_EXTENSIONS if "video" in wanted else set())
            )
            raise BadInputError(
                root,
                f"not a supported {' or '.join(sorted(wanted))} file "
                f"(extensions: {' '.join(accepted)})",
            )
        yield MediaFile(root, Path(root.name), kind)
