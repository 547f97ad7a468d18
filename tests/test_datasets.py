"""Dataset readers on tiny fixtures in the exact official layouts, plus the real list files.

The real CelebA/LFW/COCO/Supervisely/MOTS images are not available here, so each test builds a
few real photos (skimage samples, resized) in the official layout under tmp_path. The official
LFW pairs.txt and CelebA identity file are checked for the facts protocols.md states.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import pickle
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from pycocotools import mask as mask_utils
from skimage import data as skdata

from deid.datasets import celeba, lfw
from deid.datasets.coco_persons import read_coco_persons
from deid.datasets.image_folder import read_demo, read_image_folder, scan_image_folder
from deid.datasets.mots import read_mots
from deid.datasets.records import FaceRecord, PersonRecord, RecordDataset
from deid.datasets.registry import (
    build_dataset,
    build_face_dataset,
    build_person_dataset,
    dataset_names,
)
from deid.datasets.supervisely import read_supervisely
from deid.errors import DatasetLayoutError, DeidError

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = next(
    (p for p in (REPO / "shared" / "data", REPO.parent / "shared" / "data") if p.is_dir()),
    REPO.parent / "shared" / "data",
)
_PHOTOS = (skdata.astronaut, skdata.chelsea, skdata.coffee)


def _photo(index: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A real RGB photo resized to (height, width)."""
    image = _PHOTOS[index % len(_PHOTOS)]()
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _write(path: Path, index: int = 0, size: tuple[int, int] = (48, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(_photo(index, size)).save(path, format=fmt)
    return path


def _shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return path


# ---------------------------------------------------------------- records


def test_record_dataset_reads_images_and_labels(tmp_path: Path) -> None:
    records = [
        FaceRecord(_write(tmp_path / f"{who}_{i}.jpg", i), who, f"{who}_{i}.jpg", "train")
        for i, who in enumerate(["b", "a", "b"])
    ]
    dataset = RecordDataset(records)
    assert len(dataset) == 3 and dataset.labels == {"a": 0, "b": 1}
    sample = dataset[1]
    assert sample["image"].shape == (48, 64, 3) and sample["image"].dtype == np.uint8
    assert (sample["identity"], sample["label"], sample["image_id"]) == ("a", 0, "a_1.jpg")
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["image"].shape == (3, 48, 64, 3) and batch["label"].tolist() == [1, 0, 1]


def test_person_record_mask_is_bool_and_lazy(tmp_path: Path) -> None:
    calls = []

    def loader() -> np.ndarray:
        calls.append(1)
        return np.eye(4, dtype=np.uint8)

    record = PersonRecord(tmp_path / "x.jpg", "x.jpg", 3, "val", loader)
    assert not calls and record.key == "x.jpg#3"
    assert record.load_mask().dtype == bool and record.load_mask().sum() == 4


# ---------------------------------------------------------------- CelebA

CELEBA_ROWS = [  # (file, identity, official partition)
    ("000001.jpg", "10000", 0),  # first CIAGAN identity -> ciagan train
    ("000002.jpg", "10000", 0),
    ("000003.jpg", "9987", 1),  # last CIAGAN identity -> ciagan test
    ("000004.jpg", "9987", 2),
    ("000005.jpg", "2", 2),  # not a CIAGAN identity
    ("000006.jpg", "1", 1),  # not a CIAGAN identity
]


def _celeba(root: Path, header: bool = False, newline: str = "\n") -> Path:
    for i, (name, _, _) in enumerate(CELEBA_ROWS):
        _write(root / "img_align_celeba" / name, i, (218 // 4, 178 // 4))
    lines = (["image identity"] if header else []) + [f"{n} {who}" for n, who, _ in CELEBA_ROWS]
    (root / "identity_CelebA.txt").write_bytes((newline.join(lines) + newline).encode())
    partition = "".join(f"{n} {p}\n" for n, _, p in CELEBA_ROWS)
    (root / "list_eval_partition.txt").write_text(partition)
    return root


def test_ciagan_identity_list_is_shipped_and_sorted_as_strings() -> None:
    ids = celeba.ciagan_identities()
    assert len(ids) == 1563 and ids == sorted(ids) and len(set(ids)) == 1563
    assert ids[:3] == ["10000", "10001", "10003"] and ids[-1] == "9987"
    assert "2" not in ids and "1" not in ids
    split = celeba.ciagan_split(ids)
    assert sum(v == "train" for v in split.values()) == 1200
    assert sum(v == "test" for v in split.values()) == 363


def test_shipped_ciagan_list_is_the_shared_file() -> None:
    shared = _shared("celeba/ciagan_identities.npy")
    shipped = REPO / "deid" / "datasets" / "resources" / "ciagan_identities.npy"
    assert shipped.read_bytes() == shared.read_bytes()
    assert np.load(shipped, allow_pickle=False).dtype == np.int64  # ids, sorted as strings


def test_ciagan_identities_have_30_to_35_images_in_the_official_identity_file() -> None:
    identity = celeba.read_identity_file(_shared("celeba/identity_CelebA.txt"))
    assert len(identity) == 202599 and len(set(identity.values())) == 10177
    counts: dict[str, int] = {}
    for who in identity.values():
        counts[who] = counts.get(who, 0) + 1
    chosen = [counts.get(who, 0) for who in celeba.ciagan_identities()]
    assert min(chosen) == 30 and max(chosen) == 35
    split = celeba.ciagan_split()
    train = sum(counts[w] for w, part in split.items() if part == "train")
    assert (train, sum(chosen) - train) == (36027, 10897)


def test_celeba_official_partition(tmp_path: Path) -> None:
    records = celeba.read_celeba(_celeba(tmp_path))
    assert [r.split for r in records] == ["train", "train", "val", "test", "test", "val"]
    assert records[0].identity == "10000" and records[0].image_id == "img_align_celeba/000001.jpg"
    assert records[0].path == tmp_path / "img_align_celeba" / "000001.jpg"
    test = celeba.read_celeba(tmp_path, subset="test")
    assert [r.image_id[-10:] for r in test] == ["000004.jpg", "000005.jpg"]


def test_celeba_ciagan_split_selects_the_listed_identities(tmp_path: Path) -> None:
    root = _celeba(tmp_path, header=True, newline="\r\n")  # the shared copy's header and CRLF
    (root / "list_eval_partition.txt").unlink()  # the ciagan split does not need it
    records = celeba.read_celeba(root, split="ciagan")
    assert [(r.identity, r.split) for r in records] == [
        ("10000", "train"),
        ("10000", "train"),
        ("9987", "test"),
        ("9987", "test"),
    ]
    assert len(celeba.read_celeba(root, split="ciagan", subset="test")) == 2


def test_celeba_layout_errors_name_the_missing_file(tmp_path: Path) -> None:
    root = _celeba(tmp_path)
    (root / "identity_CelebA.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"missing identity_CelebA.txt \(expected the "):
        celeba.read_celeba(root)
    with pytest.raises(DeidError, match="official, ciagan"):
        celeba.read_celeba(root, split="nope")
    with pytest.raises(DatasetLayoutError, match="dataset root not found"):
        celeba.read_celeba(tmp_path / "absent")


def test_celeba_malformed_line_gives_file_and_line(tmp_path: Path) -> None:
    root = _celeba(tmp_path)
    with open(root / "list_eval_partition.txt", "a") as handle:
        handle.write("000007.jpg 3\n")
    with pytest.raises(DatasetLayoutError, match=r"list_eval_partition.txt:7: value 3"):
        celeba.read_celeba(root)


def test_celeba_missing_images_are_counted(tmp_path: Path, caplog) -> None:
    root = _celeba(tmp_path)
    (root / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 of 6 listed images are missing.*000003"):
        celeba.read_celeba(root)
    with caplog.at_level(logging.WARNING, logger="deid.datasets"):
        records = celeba.read_celeba(root, allow_missing=True)
    assert len(records) == 5 and "1 of 6 listed images are missing" in caplog.text


# ---------------------------------------------------------------- LFW


def _pairs_text(folds: int = 2, half: int = 2) -> str:
    lines = [f"{folds}\t{half}"]
    for k in range(folds):
        lines += [f"P{k}_{i}\t1\t2" for i in range(half)]
        lines += [f"P{k}_{i}\t1\tQ{k}_{i}\t1" for i in range(half)]
    return "\n".join(lines) + "\n"


def test_real_pairs_file_matches_the_protocol() -> None:
    pairs = lfw.parse_pairs(_shared("lfw/pairs.txt"))
    assert len(pairs) == 6000 and [p.index for p in pairs] == list(range(6000))
    assert sorted({p.fold for p in pairs}) == list(range(10))
    assert sum(p.same for p in pairs) == 3000
    assert all(p.same == (p.index % 600 < 300) and p.fold == p.index // 600 for p in pairs)
    assert pairs[0].path_a == Path("Abel_Pacheco/Abel_Pacheco_0001.jpg")
    names = [
        {n for p in pairs if p.fold == k for n in (p.identity_a, p.identity_b)} for k in range(10)
    ]
    assert all(not (names[i] & names[j]) for i in range(10) for j in range(i + 1, 10))
    firsts, seconds = {p.path_a for p in pairs}, {p.path_b for p in pairs}
    assert len(firsts & seconds) == 1439 and len(firsts | seconds) == 7701


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda ls: ["10\tthree", *ls[1:]], r"pairs.txt:1: expected the header"),
        (lambda ls: ["2", *ls[1:]], r"pairs.txt:1: expected the header"),
        (lambda ls: [*ls[:2], "P0_1\t1\t2\t3", *ls[3:]], r"pairs.txt:3: expected a matched"),
        (lambda ls: [*ls[:4], "P0_0\t1\tQ", *ls[5:]], r"pairs.txt:5: expected a mismatched"),
        (lambda ls: [*ls[:6], "P1_0\tone\t2", *ls[7:]], r"pairs.txt:7: image index 'one'"),
        (lambda ls: [*ls[:6], "P1_0\t1\t0", *ls[7:]], r"pairs.txt:7: image index '0'"),
        # fold 0 with 3 matched + 1 mismatched: the count per fold is wrong at line 4
        (lambda ls: [*ls[:3], "P0_2\t1\t2", *ls[4:]], r"pairs.txt:4: expected a mismatched"),
        (lambda ls: ls[:-1], r"pairs.txt:9: expected 8 pair lines .* found 7"),
        (lambda ls: [*ls, "X\t1\t2"], r"pairs.txt:10: expected 8 pair lines .* found 9"),
    ],
    ids=["header", "one-number-header", "fields", "fields-mismatch", "index", "zero",
         "per-fold", "short", "long"],
)  # fmt: skip
def test_malformed_pairs_file_names_the_line(tmp_path: Path, edit, match: str) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(edit(_pairs_text().splitlines())) + "\n")
    with pytest.raises(DatasetLayoutError, match=match):
        lfw.parse_pairs(path)


def _lfw_root(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pairs.txt").write_text(_pairs_text())
    for i, pair in enumerate(lfw.parse_pairs(root / "pairs.txt")):
        for rel in (pair.path_a, pair.path_b):
            if not (root / "lfw" / rel).exists():
                _write(root / "lfw" / rel, i, (25, 25))
    return root


def test_lfw_dataset_checks_images(tmp_path: Path, caplog) -> None:
    root = _lfw_root(tmp_path)
    dataset = lfw.LFWDataset(root)
    assert len(dataset) == 8 and dataset.missing == 0
    assert dataset.path(dataset[0].path_b) == root / "lfw" / "P0_0" / "P0_0_0002.jpg"
    records = dataset.face_records()
    assert len(records) == 12 and len({r.image_id for r in records}) == 12  # P*_0001 reused
    assert {r.split for r in records} == {"fold0", "fold1"}
    assert len(dataset.face_records("fold1")) == 6
    (root / "lfw" / "Q1_1" / "Q1_1_0001.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 of 12 listed images are missing.*Q1_1"):
        lfw.LFWDataset(root)
    with caplog.at_level(logging.WARNING, logger="deid.datasets"):
        assert len(lfw.LFWDataset(root, allow_missing=True)) == 7


def test_lfw_without_image_folder(tmp_path: Path) -> None:
    (tmp_path / "pairs.txt").write_text(_pairs_text())
    with pytest.raises(DatasetLayoutError, match=r"missing lfw/ \(expected the LFW layout"):
        lfw.LFWDataset(tmp_path)


# ---------------------------------------------------------------- image folders


def test_image_folder_reads_identity_subfolders(tmp_path: Path) -> None:
    _write(tmp_path / "bob" / "a.jpg", 0)
    _write(tmp_path / "bob" / "B.PNG", 1)
    _write(tmp_path / "amy" / "x.JPEG", 2)
    (tmp_path / "amy" / "notes.txt").write_text("not an image")
    (tmp_path / "amy" / ".hidden.jpg").write_text("skipped")
    (tmp_path / "README.md").write_text("stray")
    scan = scan_image_folder(tmp_path)
    assert scan.ignored == 2
    assert [(r.identity, r.image_id) for r in scan.records] == [
        ("amy", "amy/x.JPEG"),
        ("bob", "bob/B.PNG"),
        ("bob", "bob/a.jpg"),
    ]
    sample = RecordDataset(read_image_folder(tmp_path, split="test"))[0]
    assert sample["image"].shape == (48, 64, 3) and sample["label"] == 0


@pytest.mark.parametrize("content", ["empty", "text-only", "flat"])
def test_image_folder_without_images_says_so(tmp_path: Path, content: str) -> None:
    if content == "text-only":
        (tmp_path / "amy").mkdir()
        (tmp_path / "amy" / "notes.txt").write_text("x")
    if content == "flat":  # images not sorted into identity folders
        _write(tmp_path / "a.jpg")
    with pytest.raises(DatasetLayoutError, match="no images found under"):
        read_image_folder(tmp_path)


def test_demo_reader_on_the_real_demo_set(demo_root: Path) -> None:
    records = read_demo(demo_root)
    assert len(records) == 118 and len({r.image_id for r in records}) == 118
    assert {r.split for r in records} == {"train", "val"}
    assert len({r.identity for r in records}) == 5
    assert len(read_demo(demo_root, "val")) == 25
    with pytest.raises(DatasetLayoutError, match="make setup"):
        read_demo(demo_root.parent / "no_demo_here")


# ---------------------------------------------------------------- COCO persons


def _coco(root: Path) -> Path:
    _write(root / "val2017" / "000000000139.jpg", 0, (48, 64))
    crowd = mask_utils.encode(np.asfortranarray(np.ones((48, 64), np.uint8)))
    crowd["counts"] = crowd["counts"].decode()
    spec = {
        "images": [{"id": 139, "file_name": "000000000139.jpg", "height": 48, "width": 64}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 139, "category_id": 1, "iscrowd": 0, "area": 600.0,
             "bbox": [10, 10, 30, 20], "segmentation": [[10, 10, 40, 10, 40, 30, 10, 30]]},
            {"id": 2, "image_id": 139, "category_id": 1, "iscrowd": 1, "area": 3072.0,
             "bbox": [0, 0, 64, 48], "segmentation": crowd},
            {"id": 3, "image_id": 139, "category_id": 18, "iscrowd": 0, "area": 100.0,
             "bbox": [0, 0, 10, 10], "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
        ],
    }  # fmt: skip
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(spec))
    return root


def test_coco_persons_skip_crowd_and_other_classes(tmp_path: Path) -> None:
    records = read_coco_persons(_coco(tmp_path), split="val")
    assert len(records) == 1
    record = records[0]
    assert (record.image_id, record.instance_id, record.split) == (
        "val2017/000000000139.jpg",
        1,
        "val",
    )
    assert record.bbox == (10.0, 10.0, 30.0, 20.0)
    mask = record.load_mask()
    assert mask.shape == (48, 64) and mask.sum() == 600
    assert mask[10:30, 10:40].all()
    assert pickle.loads(pickle.dumps(record)).load_mask().sum() == 600  # DataLoader workers
    assert read_coco_persons(tmp_path, min_area=601) == []
    sample = RecordDataset(records)[0]
    assert sample["mask"].sum() == 600 and sample["image"].shape == (48, 64, 3)


def test_coco_layout_errors(tmp_path: Path) -> None:
    root = _coco(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"missing annotations/instances_train2017.json"):
        read_coco_persons(root, split="train")
    (root / "val2017" / "000000000139.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 of 1 listed images are missing"):
        read_coco_persons(root)
    (root / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(DatasetLayoutError, match="not valid JSON"):
        read_coco_persons(root)


# ---------------------------------------------------------------- Supervisely


def _bitmap_data(patch: np.ndarray) -> str:
    """Encode like the Supervisely SDK: palette PNG, index 0 transparent, zlib, base64."""
    image = Image.fromarray(patch.astype(np.uint8))
    image.putpalette([0, 0, 0, 255, 255, 255])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    return base64.b64encode(zlib.compress(buffer.getvalue())).decode()


def _supervisely(root: Path) -> tuple[Path, np.ndarray]:
    _write(root / "ds1" / "img" / "pic.png", 1, (48, 64))
    _write(root / "ds1" / "img" / "empty.png", 2, (48, 64))
    patch = np.zeros((6, 5), bool)
    patch[1:5, 2:4] = True
    patch[0, 0] = True
    objects = [
        {"classTitle": "person_poly", "geometryType": "polygon",
         "points": {"exterior": [[2, 3], [20, 3], [20, 30], [2, 30]],
                    "interior": [[[8, 10], [12, 10], [12, 14], [8, 14]]]}},
        {"classTitle": "background", "geometryType": "polygon",
         "points": {"exterior": [[0, 0], [63, 0], [63, 47]], "interior": []}},
        {"classTitle": "person_bmp", "geometryType": "bitmap",
         "bitmap": {"data": _bitmap_data(patch), "origin": [40, 20]}},
    ]  # fmt: skip
    ann = {"description": "", "tags": [], "size": {"height": 48, "width": 64}, "objects": objects}
    (root / "ds1" / "ann").mkdir(parents=True)
    (root / "ds1" / "ann" / "pic.png.json").write_text(json.dumps(ann))
    empty = {"size": {"height": 48, "width": 64}, "objects": []}
    (root / "ds1" / "ann" / "empty.png.json").write_text(json.dumps(empty))
    (root / "meta.json").write_text(json.dumps({"classes": [], "tags": []}))
    return root, patch


def test_supervisely_polygon_and_bitmap_masks(tmp_path: Path) -> None:
    root, patch = _supervisely(tmp_path)
    records = read_supervisely(root)
    assert [(r.image_id, r.instance_id, r.split) for r in records] == [
        ("ds1/img/pic.png", 0, "ds1"),
        ("ds1/img/pic.png", 2, "ds1"),
    ]
    polygon = records[0].load_mask()
    assert polygon.shape == (48, 64)
    assert polygon[3:31, 2:21].sum() == polygon.sum()  # inside the exterior ring (x 2..20)
    assert not polygon[10:15, 8:13].any()  # the interior ring is a hole
    assert polygon.sum() == 19 * 28 - 5 * 5
    bitmap = records[1].load_mask()
    expected = np.zeros((48, 64), bool)
    expected[20:26, 40:45] = patch  # origin is [x, y] of the top-left corner
    np.testing.assert_array_equal(bitmap, expected)
    merged = read_supervisely(root, merge=True)
    assert len(merged) == 1
    np.testing.assert_array_equal(merged[0].load_mask(), polygon | bitmap)
    assert pickle.loads(pickle.dumps(records[1])).load_mask().sum() == patch.sum()


def test_supervisely_layout_errors(tmp_path: Path) -> None:
    root, _ = _supervisely(tmp_path)
    with pytest.raises(DatasetLayoutError, match="no dataset 'ds9'"):
        read_supervisely(root, split="ds9")
    (root / "ds1" / "img" / "pic.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 of 1 listed images are missing.*pic.png"):
        read_supervisely(root)
    (root / "meta.json").unlink()
    with pytest.raises(DatasetLayoutError, match=r"missing meta.json \(expected the Supervisely"):
        read_supervisely(root)


# ---------------------------------------------------------------- MOTS


def _mots(root: Path, as_txt: bool) -> dict[int, np.ndarray]:
    ids = np.zeros((48, 64), np.uint16)
    ids[5:20, 5:15] = 2001
    ids[25:40, 30:40] = 2002
    ids[0:5, 50:60] = 1001  # a car
    ids[40:48, 0:10] = 10000  # ignore region
    _write(root / "train" / "images" / "0002" / "000000.jpg", 0, (48, 64))
    if as_txt:
        lines = []
        for obj in (2001, 2002, 1001, 10000):
            rle = mask_utils.encode(np.asfortranarray((ids == obj).astype(np.uint8)))
            lines.append(f"0 {obj} {obj // 1000} 48 64 {rle['counts'].decode()}")
        (root / "instances_txt").mkdir()
        (root / "instances_txt" / "0002.txt").write_text("\n".join(lines) + "\n")
    else:
        (root / "instances" / "0002").mkdir(parents=True)
        Image.fromarray(ids).save(root / "instances" / "0002" / "000000.png")
    return {obj: ids == obj for obj in (2001, 2002)}


@pytest.mark.parametrize("as_txt", [False, True], ids=["png", "txt"])
def test_mots_pedestrians(tmp_path: Path, as_txt: bool) -> None:
    expected = _mots(tmp_path, as_txt)
    records = read_mots(tmp_path)
    assert [(r.image_id, r.instance_id) for r in records] == [
        ("train/images/0002/000000.jpg", 2001),
        ("train/images/0002/000000.jpg", 2002),
    ]
    for record in records:
        np.testing.assert_array_equal(record.load_mask(), expected[record.instance_id])


# ---------------------------------------------------------------- registry and configs


def test_registry_names_and_errors(tmp_path: Path) -> None:
    assert set(dataset_names()) == {
        "celeba", "lfw", "image_folder", "demo", "coco_persons", "supervisely", "mots",
        "segmented_photos",
    }  # fmt: skip
    with pytest.raises(DeidError, match="celeba, demo, image_folder, lfw"):
        build_face_dataset("celebb", tmp_path)
    with pytest.raises(DeidError, match="coco_persons, mots, segmented_photos, supervisely"):
        build_person_dataset("cityscapes", tmp_path)
    with pytest.raises(DeidError, match="person dataset: use build_person_dataset"):
        build_face_dataset("coco_persons", tmp_path)
    with pytest.raises(DeidError, match="'celeba'.*unexpected keyword.*'pairs'"):
        build_face_dataset("celeba", tmp_path, pairs="x")


def test_registry_builds_from_the_configs(tmp_path: Path) -> None:
    celeba_root = _celeba(tmp_path / "celeba")
    for name in ("celeba", "celeba_ciagan", "coco_persons", "supervisely", "mots", "lfw", "demo"):
        cfg = OmegaConf.load(REPO / "conf" / "data" / f"{name}.yaml")
        assert cfg.name in dataset_names()
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "data" / "celeba_ciagan.yaml"))
    cfg["root"] = str(celeba_root)
    assert len(build_dataset(cfg)) == 4
    lfw_root = _lfw_root(tmp_path / "lfw")
    cfg = {"name": "lfw", "root": lfw_root, "pairs": lfw_root / "pairs.txt", "split": "fold0"}
    assert len(build_dataset(cfg)) == 6
    coco = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "data" / "coco_persons.yaml"))
    coco["root"] = str(_coco(tmp_path / "coco"))
    assert [r.instance_id for r in build_dataset(coco)] == [1]
    sup = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "data" / "supervisely.yaml"))
    sup["root"] = str(_supervisely(tmp_path / "sup")[0])
    assert len(build_dataset(sup)) == 2


def test_segmented_photos_give_one_person_per_demo_photo(demo_root: Path) -> None:
    """The demo photos as a person dataset: every validation photo is one person whose mask
    (MediaPipe, offline) is the person's silhouette: a real share of the photo, not all of it."""
    from deid.datasets.registry import build_dataset
    from deid.media import read_image

    config = {"name": "segmented_photos", "root": str(demo_root), "photos": "demo"}
    records = build_dataset({**config, "split": "all", "eval_subset": "val"}, for_evaluation=True)
    assert len(records) == 25 and {r.split for r in records} == {"val"}
    for record in records[:3]:
        mask = record.load_mask()
        assert mask.shape == read_image(record.path).shape[:2] and mask.dtype == bool
        assert 0.05 < mask.mean() < 0.95
        np.testing.assert_array_equal(mask, record.load_mask())  # the same every time
