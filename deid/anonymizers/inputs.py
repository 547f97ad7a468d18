"""Which files to anonymize and where each output goes; never onto an input.

Output layout (like `cp -r`):
  * one folder in: `out/` mirrors it (`in=photos out=anon` -> `anon/a/b.jpg` for `photos/a/b.jpg`);
  * several inputs: each file goes to `out/<name>`, each folder to `out/<folder name>/...`;
  * one image (video) in and `out` an image (video) file name: that file is written.
Names and extensions are kept. Formats this project cannot write keep their name with another
extension: images (.pgm .pbm .pnm) become .png (lossless), videos (.webm .mpg .mpeg .wmv .flv)
become .mp4; the summary lists each such change.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deid.errors import DeidError
from deid.media import IMAGE_WRITE_FORMATS, VIDEO_WRITE_CODECS, iter_media, media_kind
from deid.media.files import MediaKind

IMAGE_FALLBACK_EXT = ".png"
VIDEO_FALLBACK_EXT = ".mp4"


@dataclass(frozen=True)
class Job:
    """One input file and its output."""

    src: Path
    dst: Path
    rel: str  # the output's path relative to the output folder (posix); the default camera id
    kind: MediaKind

    @property
    def ext_changed(self) -> bool:
        return self.src.suffix.lower() != self.dst.suffix.lower()


def writable_suffix(path: Path, kind: MediaKind) -> str:
    """`path`'s extension when we can write that format, else the lossless/common substitute."""
    ext = path.suffix.lower()
    if kind == "image":
        return path.suffix if ext in IMAGE_WRITE_FORMATS else IMAGE_FALLBACK_EXT
    return path.suffix if ext in VIDEO_WRITE_CODECS else VIDEO_FALLBACK_EXT


def _single_file_output(inputs: Sequence[Path], out: Path) -> MediaKind | None:
    """The kind, when `out` names the one output file of a single file input."""
    if len(inputs) != 1 or not inputs[0].is_file() or out.is_dir():
        return None
    kind = media_kind(inputs[0])
    return kind if kind is not None and media_kind(out) == kind else None


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


@dataclass(frozen=True)
class Plan:
    """The jobs of a run and where its summary goes."""

    jobs: list[Job]
    summary: Path  # `out/anonymize_summary.json`, or `<name>.anonymize_summary.json` beside a file


def plan_jobs(inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Plan:
    """Expand `inputs` (files and folders, recursively) into jobs writing under `out`.

    Raises a one-line `DeidError` for a missing input, an unsupported file argument, an output
    that would overwrite an input or land inside an input folder, and two inputs that would
    write the same output.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise DeidError("no input given: in=PATH (an image, a video or a folder)")
    out = Path(out)
    for path in paths:
        if _inside(out, path) if path.is_dir() else (out.exists() and _same(out, path)):
            raise DeidError(
                f"output {out} is the input {path} or inside it; "
                "choose another output so no input is ever overwritten"
            )
    single = _single_file_output(paths, out)
    if single is None and out.exists() and not out.is_dir():
        raise DeidError(f"output {out} is an existing file; give a folder for these inputs")
    if single is None and len(paths) == 1 and paths[0].is_file() and media_kind(out):
        raise DeidError(
            f"output {out} is a {media_kind(out)} name but {paths[0]} is a "
            f"{media_kind(paths[0]) or 'file of another kind'}; give a folder or a "
            "file name of the same kind"
        )
    if single is not None:
        (media,) = list(iter_media(paths))
        dst = out.with_suffix(writable_suffix(out, single))
        jobs = [Job(media.path, dst, dst.name, single)]
        summary = dst.parent / f"{dst.stem}.anonymize_summary.json"
    else:
        summary = out / "anonymize_summary.json"
        several = len(paths) > 1
        jobs = []
        for path in paths:
            prefix = Path(path.resolve().name) if several and path.is_dir() else Path()
            for media in iter_media([path]):
                rel = prefix / media.relpath
                rel = rel.with_suffix(writable_suffix(rel, media.kind))
                jobs.append(Job(media.path, out / rel, rel.as_posix(), media.kind))
    if not jobs:
        listed = ", ".join(str(p) for p in paths)
        raise DeidError(f"no images or videos found in {listed}")
    _check_collisions(jobs)
    return Plan(jobs, summary)


def _check_collisions(jobs: Sequence[Job]) -> None:
    sources = {job.src.resolve() for job in jobs}
    seen: dict[Path, Path] = {}
    for job in jobs:
        target = job.dst.resolve()
        if target in sources:
            raise DeidError(
                f"output {job.dst} would overwrite an input; choose another output folder"
            )
        if target in seen:
            raise DeidError(
                f"{seen[target]} and {job.src} would both be written to {job.dst}; "
                "anonymize them into separate output folders"
            )
        seen[target] = job.src
