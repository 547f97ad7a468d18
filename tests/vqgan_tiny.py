"""Tiny datasets in the official layouts and Hydra overrides that shrink the VQGAN stages to
a few hundred thousand parameters, for fast tests of the real training code."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from deid.media import write_image

# the COCO experiments' networks at a size a test can run: 64 px crops, f=16 (5 levels) -> 4x4
TINY_VQ = [
    "module.vq.ch=32",
    "module.vq.ch_mult=[1,1,1,1,1]",
    "module.vq.num_res_blocks=1",
    "module.vq.attn_resolutions=[4]",
    "module.vq.z_channels=32",
    "module.vq.embed_dim=16",
    "module.vq.n_embed=64",
]
TINY_DATA = [
    "datamodule.image_size=64",
    "datamodule.batch_size=2",
    "datamodule.num_workers=0",
    "datamodule.preprocess.min_area=100",  # the tiny COCO persons are small
]
TINY_FIRST = [
    *TINY_VQ,
    "module.discriminator.ndf=8",
    "module.discriminator.n_layers=1",
    "module.loss.perceptual=none",  # LPIPS needs user-supplied VGG weights
]
TINY_TRANSFORMER = [
    "module.transformer.vocab_size=null",  # the stages' larger codebook
    "module.transformer.n_layer=1",
    "module.transformer.n_head=2",
    "module.transformer.n_embd=32",
]
TINY_CONFIG = {  # the same networks as a VQConfig dict (stage checkpoints made in tests)
    "ch": 32,
    "ch_mult": [1, 1, 1, 1, 1],
    "num_res_blocks": 1,
    "attn_resolutions": [4],
    "z_channels": 32,
    "embed_dim": 16,
    "n_embed": 64,
}

# COCO-Stuff PNG values (COCO-Stuff id - 1): person 0, a "thing" 2 (car), stuff 123, 255 unlabeled
PERSON_VALUE, CAR_VALUE, STUFF_VALUE, UNLABELED = 0, 2, 123, 255


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> list[float]:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    points = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1)
    return [float(v) for v in points.reshape(-1)]


def build_tiny_coco(root: Path, split: str = "train", images: int = 4) -> Path:
    """COCO 2017 layout: `annotations/instances_<split>2017.json`, `<split>2017/*.jpg` and
    COCO-Stuff maps `stuffthingmaps_trainval2017/<split>2017/*.png`. Each 96x128 image has a
    person (an ellipse, polygon annotation) on textured stuff, a car, an unlabeled band; the
    second image has two persons; one crowd annotation must be skipped."""
    rng = np.random.default_rng(0)
    height, width = 96, 128
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }
    stuff_dir = root / "stuffthingmaps_trainval2017" / f"{split}2017"
    stuff_dir.mkdir(parents=True)
    ann_id = 1
    for i in range(images):
        image_id = 1000 + i
        name = f"{image_id:012d}.jpg"
        image = rng.integers(60, 200, (height, width, 3), dtype=np.uint8)
        values = np.full((height, width), STUFF_VALUE, np.uint8)
        values[:, :6] = UNLABELED
        values[70:90, 100:124] = CAR_VALUE
        image[70:90, 100:124] = (30, 30, 200)
        persons = [(40 + 3 * i, 48, 18, 36)] + ([(88, 40, 12, 24)] if i == 1 else [])
        for cx, cy, rx, ry in persons:
            polygon = ellipse_polygon(cx, cy, rx, ry)
            rle = mask_utils.frPyObjects([polygon], height, width)
            with warnings.catch_warnings():  # pycocotools' NumPy 2 `copy=` notice
                warnings.simplefilter("ignore", DeprecationWarning)
                mask = mask_utils.decode(mask_utils.merge(rle)).astype(bool)
            values[mask] = PERSON_VALUE
            image[mask] = (220, 160, 120)
            box = [cx - rx, cy - ry, 2 * rx, 2 * ry]
            coco["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "area": float(mask.sum()),
                    "bbox": box,
                    "segmentation": [polygon],
                }
            )
            ann_id += 1
        crowd = mask_utils.encode(np.asfortranarray(np.ones((height, width), np.uint8)))
        crowd["counts"] = crowd["counts"].decode()
        coco["annotations"].append(
            {
                "id": ann_id,
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 1,
                "area": float(height * width),
                "bbox": [0, 0, width, height],
                "segmentation": crowd,
            }
        )
        ann_id += 1
        coco["images"].append({"id": image_id, "file_name": name, "height": height, "width": width})
        write_image(root / f"{split}2017" / name, image)
        cv2.imwrite(str(stuff_dir / name.replace(".jpg", ".png")), values)
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(coco))
    return root


DEMO_PEOPLE = ("ben_afflek", "madonna", "mindy_kaling")


def build_tiny_demo(demo_root: Path, root: Path, train: int = 4, val: int = 2) -> Path:
    """The demo layout with `train` + `val` real photos of 3 identities (masks: MediaPipe)."""
    for split, count in (("train", train), ("val", val)):
        for name in DEMO_PEOPLE:
            folder = root / split / name
            folder.mkdir(parents=True)
            for photo in sorted((demo_root / split / name).glob("*.jpg"))[:count]:
                shutil.copy(photo, folder / photo.name)
    (root / ".complete").write_text("test fixture\n")
    return root


def build_supervisely_flat(root: Path) -> Path:
    """The flat Supervisely layout: images/*.png|jpg + masks/<stem>.png|jpg (0/255)."""
    rng = np.random.default_rng(1)
    for k, (name, mask_name) in enumerate((("a.png", "a.png"), ("b.jpg", "b.jpg"))):
        image = rng.integers(0, 255, (80, 60, 3), dtype=np.uint8)
        mask = np.zeros((80, 60), np.uint8)
        mask[10 + k : 70, 15:45] = 255
        write_image(root / "images" / name, image)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "masks" / mask_name), mask)
    write_image(root / "images" / "c_no_mask.png", np.zeros((8, 8, 3), np.uint8))
    return root
