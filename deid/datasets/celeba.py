"""CelebA in its official layout, with the official partition or the CIAGAN identity split.

    root/img_align_celeba/000001.jpg ...   root/identity_CelebA.txt   root/list_eval_partition.txt

`official`: list_eval_partition.txt, 0/1/2 -> train/val/test (identity-disjoint).
`ciagan`: the 1,563 identities of CIAGAN's `ciagan_identities.npy` (shipped with this package),
stored as int64 ids in string-sorted order ("10000", "10001", ..., "1003", ...); the first
1,200 are train and the last 363 test, as in the CIAGAN code. Only the identity file is needed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from deid.datasets.layout import check_missing, file_names, require_path
from deid.datasets.records import FaceRecord
from deid.errors import DatasetLayoutError, DeidError, unknown_name

SPLITS = ("official", "ciagan")
IMAGES_DIR = "img_align_celeba"
IDENTITY_FILE = "identity_CelebA.txt"
PARTITION_FILE = "list_eval_partition.txt"
PARTITIONS = {"0": "train", "1": "val", "2": "test"}
CIAGAN_IDENTITIES = 1563
CIAGAN_TRAIN = 1200
_LAYOUT = "official CelebA"


def _resource_path() -> Path:
    return Path(str(resources.files("deid.datasets") / "resources" / "ciagan_identities.npy"))


def ciagan_identities(path: str | Path | None = None) -> list[str]:
    """The 1,563 CIAGAN identities as strings, in the file's (string-sorted) order."""
    path = Path(path) if path is not None else _resource_path()
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DeidError(f"{path}: not a readable identity list ({err})") from None
    ids = [str(v) for v in values.reshape(-1).tolist()]
    if len(ids) != CIAGAN_IDENTITIES or len(set(ids)) != len(ids) or ids != sorted(ids):
        raise DeidError(
            f"{path}: expected {CIAGAN_IDENTITIES} distinct identities sorted as strings, "
            f"got {len(ids)} ({len(set(ids))} distinct)"
        )
    return ids


def ciagan_split(identities: list[str] | None = None) -> dict[str, str]:
    """Identity -> "train" for the first 1,200 and "test" for the last 363."""
    ids = identities if identities is not None else ciagan_identities()
    return {name: "train" if i < CIAGAN_TRAIN else "test" for i, name in enumerate(ids)}


def _read_two_columns(path: Path, values: set[str] | None = None) -> dict[str, str]:
    """`<image> <value>` per line (CRLF and a non-numeric header line 1 tolerated)."""
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if number == 1 and len(fields) == 2 and not fields[1].isdigit():
                continue  # a header such as "image identity"
            if len(fields) != 2 or not fields[1].isdigit():
                raise DatasetLayoutError(
                    f"{path}:{number}: expected '<image>.jpg <integer>', got {line.strip()!r}"
                )
            if values is not None and fields[1] not in values:
                raise DatasetLayoutError(
                    f"{path}:{number}: value {fields[1]} is not one of {sorted(values)}"
                )
            if fields[0] in table:
                raise DatasetLayoutError(f"{path}:{number}: {fields[0]} listed twice")
            table[fields[0]] = fields[1]
    if not table:
        raise DatasetLayoutError(f"{path}: empty (expected '<image>.jpg <integer>' per line)")
    return table


def read_identity_file(path: str | Path) -> dict[str, str]:
    """identity_CelebA.txt -> {"000001.jpg": "2880", ...}."""
    return _read_two_columns(Path(path))


def read_partition_file(path: str | Path) -> dict[str, str]:
    """list_eval_partition.txt -> {"000001.jpg": "train", ...}."""
    raw = _read_two_columns(Path(path), values=set(PARTITIONS))
    return {name: PARTITIONS[value] for name, value in raw.items()}


def _parts(root: Path, split: str, identity: dict[str, str], identities_file: Path | None):
    if split == "official":
        partition_path = require_path(root, PARTITION_FILE, _LAYOUT)
        parts = read_partition_file(partition_path)
        unknown = [name for name in parts if name not in identity]
        if unknown:
            raise DatasetLayoutError(
                f"{partition_path}: {len(unknown)} images have no identity in {IDENTITY_FILE} "
                f"(first: {unknown[0]})"
            )
        return parts
    chosen = ciagan_split(ciagan_identities(identities_file))
    return {name: chosen[who] for name, who in identity.items() if who in chosen}


def read_celeba(
    root: str | Path,
    split: str = "official",
    subset: str | None = None,
    allow_missing: bool = False,
    identities_file: str | Path | None = None,
) -> list[FaceRecord]:
    """Face records of CelebA under `split` ("official" | "ciagan"), in file order.

    `subset` keeps one part ("train", "val", "test"); `identities_file` replaces the shipped
    CIAGAN list. Listed images missing from img_align_celeba/ are an error unless
    `allow_missing` (then one warning with the count, see `deid.datasets.layout`).
    """
    if split not in SPLITS:
        raise unknown_name("CelebA split", split, SPLITS)
    allowed = ("train", "val", "test") if split == "official" else ("train", "test")
    if subset is not None and subset not in allowed:
        raise DeidError(f"CelebA {split} split has no subset {subset!r} (one of {allowed})")
    root = Path(root)
    images = require_path(root, IMAGES_DIR, _LAYOUT, folder=True)
    identity = read_identity_file(require_path(root, IDENTITY_FILE, _LAYOUT))
    parts = _parts(root, split, identity, Path(identities_file) if identities_file else None)
    wanted = [(name, part) for name, part in parts.items() if subset in (None, part)]
    if not wanted:
        raise DatasetLayoutError(
            f"{root / IDENTITY_FILE}: no images of the CelebA {split} split"
            f"{f' ({subset})' if subset else ''}"
        )
    present = file_names(images)
    missing = [name for name, _ in wanted if name not in present]
    check_missing(missing, len(wanted), images, allow_missing)
    return [
        FaceRecord(images / name, identity[name], f"{IMAGES_DIR}/{name}", part)
        for name, part in wanted
        if name in present
    ]
