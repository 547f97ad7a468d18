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


# ---------------------------------------------------------------- CIAGAN training fixtures
TRAIN_IDENTITIES = ("ben_afflek", "madonna", "mindy_kaling")


def _demo_photos(demo_root: Path, split: str, name: str, count: int) -> list[Path]:
    return sorted((demo_root / split / name).glob("*.jpg"))[:count]


def _tiny_demo(demo_root: Path, root: Path) -> None:
    """3 identities x (5 train + 3 val) real demo photos, in the demo layout."""
    import shutil

    for split, count in (("train", 5), ("val", 3)):
        for name in TRAIN_IDENTITIES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for photo in _demo_photos(demo_root, split, name, count):
                shutil.copy(photo, folder / photo.name)
    (root / ".complete").write_text("test fixture\n")


def _tiny_celeba(demo_root: Path, root: Path) -> None:
    """The official CelebA layout with 2 CIAGAN train and 2 CIAGAN test identities (real faces)."""
    import shutil

    from deid.datasets.celeba import ciagan_identities

    ids = ciagan_identities()
    chosen = [ids[0], ids[1], ids[-2], ids[-1]]  # first 1,200 train, last 363 test
    people = ("ben_afflek", "madonna", "mindy_kaling", "elton_john")
    (root / "img_align_celeba").mkdir(parents=True)
    rows = []
    for who, person in zip(chosen, people, strict=True):
        for photo in _demo_photos(demo_root, "train", person, 4):
            name = f"{len(rows) + 1:06d}.jpg"
            shutil.copy(photo, root / "img_align_celeba" / name)
            rows.append((name, who))
    (root / "identity_CelebA.txt").write_text("".join(f"{n} {w}\n" for n, w in rows))
    (root / "list_eval_partition.txt").write_text("".join(f"{n} 0\n" for n, _ in rows))


MOTS_SEQUENCES = {"0000": ("ben_afflek", "madonna"), "0001": ("mindy_kaling", "ben_afflek")}


def _tiny_mots(demo_root: Path, root: Path, frames: int = 3) -> None:
    """The MOTS layout (`train/images/<seq>/<frame>.jpg` + `instances_txt/<seq>.txt`, KITTI MOTS
    RLE lines): per sequence, two real demo people walking right over `frames` frames, their
    masks MediaPipe's on each photo (pedestrian ids 2001, 2002: class 2); plus a car (class 1)
    and an ignore region (10000) that readers must skip."""
    import cv2
    from pycocotools import mask as mask_utils

    from deid.bodies import build_segmenter
    from deid.media import read_image, write_image

    height, width = 240, 400
    with build_segmenter("mediapipe") as segmenter:
        for seq, people in MOTS_SEQUENCES.items():
            lines = []
            for frame in range(frames):
                canvas = np.full((height, width, 3), 128, np.uint8)
                ids = np.zeros((height, width), np.int64)
                ids[0:30, 0:60], ids[0:30, 340:400] = 1001, 10000
                for k, person in enumerate(people):
                    photo = read_image(_demo_photos(demo_root, "train", person, frames)[frame])
                    photo = cv2.resize(photo, (160, 200), interpolation=cv2.INTER_AREA)
                    mask = segmenter.segment(photo).instances[0]
                    x = 20 + 200 * k + 5 * frame
                    canvas[40:240, x : x + 160] = photo
                    ids[40:240, x : x + 160][mask] = 2001 + k
                write_image(root / "train" / "images" / seq / f"{frame:06d}.jpg", canvas)
                for obj_id in (1001, 2001, 2002, 10000):
                    binary = np.asfortranarray((ids == obj_id).astype(np.uint8))
                    counts = mask_utils.encode(binary)["counts"].decode("ascii")
                    cls = 10 if obj_id == 10000 else obj_id // 1000
                    lines.append(f"{frame} {obj_id} {cls} {height} {width} {counts}\n")
            (root / "instances_txt").mkdir(parents=True, exist_ok=True)
            (root / "instances_txt" / f"{seq}.txt").write_text("".join(lines))


@pytest.fixture(scope="session")
def tiny_mots_root(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MOTS dataset (see `_tiny_mots`): 2 sequences x 3 frames x 2 pedestrians."""
    root = tmp_path_factory.mktemp("mots")
    _tiny_mots(demo_root, root)
    return root


@pytest.fixture(scope="session")
def tiny_data_dir(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `paths.data_dir` with small real demo and CelebA sets, both already preprocessed
    (faces), and a tiny MOTS set (bodies are preprocessed by the first run that needs them)."""
    from hydra import compose, initialize_config_dir

    from deid.prep.faces import preprocess

    data_dir = tmp_path_factory.mktemp("data")
    _tiny_demo(demo_root, data_dir / "demo")
    _tiny_celeba(demo_root, data_dir / "celeba")
    _tiny_mots(demo_root, data_dir / "mots")  # person masks; body runs preprocess on first use
    # the standalone preprocessing's own config: the folders training would make itself
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for data in ("demo", "celeba_ciagan"):
            overrides = [f"data={data}", f"paths.data_dir={data_dir}", "workers=1"]
            preprocess(compose(config_name="preprocess", overrides=overrides))
    return data_dir
