"""VQGAN training data: COCO-Stuff label maps, Supervisely's flat layout, the segmentation-map
preprocessing (COCO-Stuff, person masks, the MediaPipe segmenter on real photos) and the
datamodule's tensors. Label maps must keep exact labels through every crop and resize."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from vqgan_tiny import (
    CAR_VALUE,
    PERSON_VALUE,
    STUFF_VALUE,
    build_supervisely_flat,
    build_tiny_coco,
    build_tiny_demo,
)

from deid.datasets.coco_stuff import (
    NUM_LABELS,
    read_stuff_map,
    resize_labels,
    stuff_labels,
    stuff_map_path,
)
from deid.datasets.registry import build_dataset
from deid.datasets.supervisely import read_supervisely
from deid.errors import DatasetLayoutError, DeidError
from deid.media import read_image
from deid.prep.bodies import read_mask
from deid.prep.segmaps import preprocess_segmaps, read_segmap_manifest
from vqgan.datamodule import VqganDataModule

ROOT = Path(__file__).resolve().parents[1]


def _prep_cfg(data: dict, out: Path, **extra) -> OmegaConf:
    defaults = OmegaConf.load(ROOT / "conf" / "prep" / "segmaps.yaml")
    values = {k: v for k, v in OmegaConf.to_container(defaults).items() if k != "out"}
    values.pop("stuff_root")
    return OmegaConf.create({**values, "data": data, "out": str(out), "workers": 1, **extra})


# ---------------------------------------------------------------- label maps


def test_coco_stuff_values_become_taming_labels() -> None:
    values = np.array([[0, 1, 181, 255]], np.uint8)
    np.testing.assert_array_equal(stuff_labels(values), [[1, 2, 182, 0]])
    assert NUM_LABELS == 183
    with pytest.raises(ValueError, match="value 200"):
        stuff_labels(np.array([[200]], np.uint8))
    assert stuff_map_path("/c", "val2017/000000000139.jpg") == Path(
        "/c/stuffthingmaps_trainval2017/val2017/000000000139.png"
    )


@pytest.mark.parametrize("size", [64, 37, (50, 70), 300])
def test_label_maps_keep_exact_labels_after_resizing(size) -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 7, 118, 182], np.uint8)[rng.integers(0, 5, (32, 32))]
    labels = cv2.resize(labels, (256, 256), interpolation=cv2.INTER_NEAREST)  # 8x8 blocks
    small = resize_labels(labels, size)
    width, height = (size, size) if isinstance(size, int) else size
    assert small.shape == (height, width) and small.dtype == np.uint8
    assert set(np.unique(small)) <= set(np.unique(labels))
    if size == 64:  # whole blocks: every output pixel is its block's label
        np.testing.assert_array_equal(small, labels[2::4, 2::4])
    else:  # what the rule prevents: bilinear resizing invents labels along boundaries
        blended = cv2.resize(labels, (width, height), interpolation=cv2.INTER_LINEAR)
        assert not set(np.unique(blended)) <= set(np.unique(labels))


# ---------------------------------------------------------------- Supervisely flat layout


def test_supervisely_flat_layout(tmp_path: Path) -> None:
    root = build_supervisely_flat(tmp_path / "flat")
    records = read_supervisely(root)  # layout auto: no meta.json, images/ + masks/
    assert [(r.image_id, r.instance_id) for r in records] == [
        ("images/a.png", 0),
        ("images/b.jpg", 0),
    ]
    png, jpg = (r.load_mask() for r in records)
    assert png.shape == (80, 60) and png.sum() == 60 * 30 and png[10:70, 15:45].all()
    assert abs(int(jpg.sum()) - 59 * 30) < 60  # JPEG mask cut at 128
    sup = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "data" / "supervisely.yaml"))
    sup["root"] = str(root)
    assert len(build_dataset(sup)) == 2
    (root / "images" / "a.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 of 2 listed images are missing"):
        read_supervisely(root)
    with pytest.raises(DatasetLayoutError, match="missing meta.json"):
        read_supervisely(root, layout="project")
    (tmp_path / "other" / "images").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="missing masks/"):
        read_supervisely(tmp_path / "other")


# ---------------------------------------------------------------- preprocessing


def test_coco_persons_get_their_coco_stuff_label_maps(tmp_path: Path) -> None:
    coco = build_tiny_coco(tmp_path / "coco")
    data = {"name": "coco_persons", "root": str(coco), "split": "train", "min_area": 0.0}
    out = tmp_path / "segmaps"
    cfg = _prep_cfg(data, out, labels="cocostuff", stuff_root=str(coco), min_area=200)
    summary = preprocess_segmaps(cfg)
    entries = read_segmap_manifest(out)
    assert summary["persons"] == len(entries) == 5  # 4 images, one with 2 persons; crowd skipped
    for entry in entries:
        labels = cv2.imread(str(out / entry.labels), cv2.IMREAD_UNCHANGED)
        assert labels.shape == (256, 256) and labels.dtype == np.uint8
        # exact COCO-Stuff labels (value + 1): person 1, car 3, stuff 124, unlabeled 0
        assert set(np.unique(labels)) <= {0, PERSON_VALUE + 1, CAR_VALUE + 1, STUFF_VALUE + 1}
        # nearest-neighbour crop: each crop pixel holds the label of its source pixel
        source = read_stuff_map(stuff_map_path(coco, entry.source))
        v, u = 128, 100
        x, y = entry.transform.apply_inverse(np.array([[u, v]], float))[0]
        expected = source[int(np.clip(round(y), 0, 95)), int(np.clip(round(x), 0, 127))]
        assert labels[v, u] == expected
        person = read_mask(out / entry.mask) > 127
        assert (labels[person] == 1).mean() > 0.95  # the instance is labelled person
    assert read_json_kind(out) == {"kind": "cocostuff", "num_labels": 183}
    again = preprocess_segmaps(cfg)  # resumable: nothing left to do
    assert again["done"] == 0 and again["skipped_already_done"] == 4
    with pytest.raises(DeidError, match="labels=cocostuff needs data=coco_persons"):
        preprocess_segmaps(_prep_cfg({"name": "demo", "root": "x"}, out, labels="cocostuff"))


def read_json_kind(out: Path) -> dict:
    import json

    return json.loads((out / "settings.json").read_text())["labels"]


def test_person_labels_from_flat_supervisely_masks(tmp_path: Path) -> None:
    root = build_supervisely_flat(tmp_path / "flat")
    out = tmp_path / "segmaps"
    preprocess_segmaps(_prep_cfg({"name": "supervisely", "root": str(root)}, out, min_area=100))
    entries = read_segmap_manifest(out)
    assert len(entries) == 2
    for entry in entries:
        labels = cv2.imread(str(out / entry.labels), cv2.IMREAD_UNCHANGED)
        person = read_mask(out / entry.mask) > 127
        assert set(np.unique(labels)) == {0, 1}
        assert (labels.astype(bool) == person).mean() > 0.98
    assert read_json_kind(out) == {"kind": "person", "num_labels": 2}


@pytest.fixture(scope="module")
def demo_segmaps(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real demo photos through the offline MediaPipe segmenter (photo-folder datasets)."""
    base = tmp_path_factory.mktemp("vqdata")
    demo = build_tiny_demo(demo_root, base / "demo", train=3, val=2)
    out = base / "segmaps"
    preprocess_segmaps(_prep_cfg({"name": "demo", "root": str(demo), "split": "all"}, out))
    return out


def test_photo_folders_are_segmented_offline(demo_segmaps: Path) -> None:
    entries = read_segmap_manifest(demo_segmaps)
    assert len(entries) == 15 and {e.split for e in entries} == {"train", "val"}
    for entry in entries:
        labels = cv2.imread(str(demo_segmaps / entry.labels), cv2.IMREAD_UNCHANGED)
        person = read_mask(demo_segmaps / entry.mask) > 127
        assert set(np.unique(labels)) == {0, 1}
        assert 0.05 < person.mean() < 0.95  # a real silhouette, not all or nothing
        assert (labels[person] == 1).mean() > 0.97  # the person is inside the label map


def test_datamodule_items_flip_together_and_keep_labels(demo_segmaps: Path) -> None:
    dm = VqganDataModule(
        str(demo_segmaps), val_split="val", image_size=32, batch_size=4, num_workers=0
    )
    dm.setup()
    assert len(dm.train_set) == 9 and len(dm.val_set) == 6 and dm.num_labels == 2
    assert dm.module_kwargs()["crop"]["labels"] == {"kind": "person", "num_labels": 2}
    plain = dm.train_set[0]
    assert plain["image"].shape == (3, 32, 32) and plain["image"].dtype == torch.float32
    assert plain["image"].min() >= -1.0 and plain["image"].max() <= 1.0
    assert plain["labels"].dtype == torch.long and set(plain["labels"].unique().tolist()) == {0, 1}
    assert plain["mask"].shape == (1, 32, 32)
    raw = cv2.imread(str(demo_segmaps / dm.train_set.entries[0].labels), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(plain["labels"].numpy(), resize_labels(raw, 32))
    flips = [dm.train_set[(0, seed)] for seed in range(12)]
    flipped = [f for f in flips if not torch.equal(f["image"], plain["image"])]
    assert flipped and len(flipped) < len(flips)  # hflip 0.5, decided by the draw seed
    for item in flipped:
        assert torch.equal(item["image"], plain["image"].flip(2))
        assert torch.equal(item["labels"], plain["labels"].flip(1))
        assert torch.equal(item["mask"], plain["mask"].flip(2))
    assert torch.equal(dm.train_set[(0, 5)]["image"], dm.train_set[(0, 5)]["image"])
    batch = dm.sample_batch()
    assert batch["image"].shape == (6, 3, 32, 32)  # the validation crops, identities first
    photo = read_image(demo_segmaps / dm.val_set.entries[0].crop)
    assert photo.shape == (256, 256, 3)


def test_wrong_number_of_labels_is_a_clear_error(demo_segmaps: Path) -> None:
    dm = VqganDataModule(str(demo_segmaps), image_size=32, num_labels=1, num_workers=0)
    dm.setup()
    with pytest.raises(DeidError, match="label 1 but the model has 1 labels"):
        dm.train_set[0]


@pytest.mark.parametrize(
    ("experiment", "standalone"),
    [
        ("vqgan_demo_first", []),
        ("vqgan_coco", ["data.split=train", "labels=cocostuff", "min_area=4096"]),
    ],
)
def test_training_and_the_standalone_command_share_one_folder(
    experiment: str, standalone: list[str], tmp_path: Path
) -> None:
    """What `train.py` preprocesses on first use is what the documented
    `python -m deid.prep.segmaps ...` makes: one folder, one settings.json."""
    from hydra import compose, initialize_config_dir

    from deid.prep.segmaps import settings_record

    build_tiny_coco(tmp_path / "coco")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        train = compose("train", [f"experiment={experiment}", f"paths.data_dir={tmp_path}"])
        data = "coco_persons" if "coco" in experiment else "demo"
        alone = compose(
            "preprocess_segmaps", [f"data={data}", f"paths.data_dir={tmp_path}", *standalone]
        )
    triggered = OmegaConf.create(
        {
            **OmegaConf.to_container(train.datamodule.preprocess, resolve=True),
            "out": train.datamodule.manifest_dir,
        }
    )
    assert triggered.out == alone.out
    assert settings_record(triggered, True) == settings_record(alone, True)
