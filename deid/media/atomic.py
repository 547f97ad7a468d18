"""Atomic file output: write to a hidden temp file beside the target, fsync, `os.replace`.

A reader never sees a half-written file: the target is either the old file (or absent) or the
complete new one. If the writing code raises, the temp file is removed and an existing target is
left untouched. A hard kill (SIGKILL, power loss) can leave a hidden `.<name>.*.tmp<ext>` file
beside the target, never a truncated target; `deid.media.iter_media` skips hidden files.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from deid.errors import BadInputError


@functools.cache
def _umask() -> int:
    # os.umask can only be read by setting it; done once, before any worker threads exist.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory fds (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicPath:
    """A temp path beside `target` that becomes `target` on `commit()`.

    Use it as a context manager (commit on success, discard on an exception) or drive it by
    hand (`commit()` / `discard()`) when the writing outlives one block, as `VideoWriter` does.
    The temp file keeps the target's extension, so tools that pick a format from the name
    (OpenCV, ffmpeg) work on it. The new file gets the old target's permissions, or the usual
    `0o666 & ~umask` ones (not the 0600 `mkstemp` would leave).
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = Path(target)
        if self.target.is_dir():
            raise BadInputError(self.target, "is a folder; expected a file path to write")
        folder = self.target.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                dir=folder, prefix=f".{self.target.name}.", suffix=f".tmp{self.target.suffix}"
            )
        except OSError as err:
            raise BadInputError(self.target, f"cannot write here ({err.strerror})") from None
        os.close(fd)
        self.tmp = Path(name)
        self.done = False

    def sibling(self) -> Path:
        """Another empty hidden temp file in the same folder (for a second processing pass)."""
        fd, name = tempfile.mkstemp(
            dir=self.target.parent,
            prefix=f".{self.target.name}.",
            suffix=f".tmp{self.target.suffix}",
        )
        os.close(fd)
        return Path(name)

    def commit(self) -> Path:
        """fsync the temp file and move it onto the target; returns the target."""
        if self.done:
            raise RuntimeError(f"{self.target}: atomic write already finished")
        try:
            _fsync_path(self.tmp)
            try:
                mode = self.target.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~_umask()
            os.chmod(self.tmp, mode)
            os.replace(self.tmp, self.target)
        except BaseException:
            self.discard()
            raise
        self.done = True
        _fsync_dir(self.target.parent)
        return self.target

    def discard(self) -> None:
        """Remove the temp file; the target is left as it was."""
        self.done = True
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_path(path: str | os.PathLike[str]) -> AtomicPath:
    """`with atomic_path("out.mp4") as tmp:` write to `tmp`; it replaces `out.mp4` on success.

    Parent folders are created. On an exception the temp file is removed and the target is kept.
    """
    return AtomicPath(path)


@contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8"
) -> Iterator[IO[Any]]:
    """Open `path` for writing atomically: `with atomic_write("r.json") as f: json.dump(x, f)`.

    `mode` is "w" (text, `encoding`) or "wb" (bytes). The file appears at `path`, complete and
    fsynced, only when the block ends without an exception.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    with AtomicPath(path) as tmp:
        if mode == "wb":
            with open(tmp, "wb") as handle:
                yield handle
        else:
            with open(tmp, "w", encoding=encoding) as handle:
                yield handle
