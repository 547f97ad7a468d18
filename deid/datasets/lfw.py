"""LFW verification pairs (the official 10-fold pairs.txt) and the original LFW images.

    root/lfw/<name>/<name>_<i:04d>.jpg    root/pairs.txt

pairs.txt: header `10\t300`, then fold k = lines 600k+2 .. 600k+601 of the file (1-based,
header = line 1): 300 matched pairs `name i j`, then 300 mismatched `name1 i name2 j`.
The parser checks that structure strictly, because the TAR@FAR protocol (protocols.md 1)
depends on it: a shifted line would silently move pairs between folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deid.datasets.layout import check_missing, require_path
from deid.datasets.records import FaceRecord
from deid.errors import DatasetLayoutError

IMAGES_DIR = "lfw"
PAIRS_FILE = "pairs.txt"
_LAYOUT = "LFW"


@dataclass(frozen=True)
class LFWPair:
    """One verification pair; paths are relative to root/lfw/."""

    index: int  # 0-based position in pairs.txt (the anonymization seed key, protocols.md 1.3)
    fold: int  # 0..9
    same: bool
    path_a: Path
    path_b: Path
    identity_a: str
    identity_b: str


def image_path(name: str, number: int) -> Path:
    """`{name}/{name}_{number:04d}.jpg`, the LFW file naming."""
    return Path(name) / f"{name}_{number:04d}.jpg"


def _header(path: Path, line: str) -> tuple[int, int]:
    fields = line.split()
    if len(fields) != 2 or not all(f.isdigit() and int(f) > 0 for f in fields):
        raise DatasetLayoutError(
            f"{path}:1: expected the header '<folds>\\t<pairs per half-fold>' such as '10\\t300', "
            f"got {line.strip()!r}"
        )
    return int(fields[0]), int(fields[1])


def _number(path: Path, number: int, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise DatasetLayoutError(f"{path}:{number}: image index {text!r} is not a positive integer")
    return int(text)


def _pair(path: Path, number: int, line: str, index: int, fold: int, same: bool) -> LFWPair:
    fields = line.split()
    expected = 3 if same else 4
    if len(fields) != expected:
        kind = "matched 'name i j'" if same else "mismatched 'name1 i name2 j'"
        raise DatasetLayoutError(
            f"{path}:{number}: expected a {kind} pair ({expected} fields) at this position of "
            f"fold {fold}, got {len(fields)} fields: {line.strip()!r}"
        )
    if same:
        name_a, a, b = fields
        name_b = name_a
    else:
        name_a, a, name_b, b = fields
        if name_a == name_b:
            raise DatasetLayoutError(f"{path}:{number}: mismatched pair names {name_a} twice")
    i, j = _number(path, number, a), _number(path, number, b)
    return LFWPair(index, fold, same, image_path(name_a, i), image_path(name_b, j), name_a, name_b)


def parse_pairs(path: str | Path) -> list[LFWPair]:
    """Parse the official pairs.txt; any deviation is a DatasetLayoutError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: pairs file not found (the official LFW pairs.txt)")
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DatasetLayoutError(f"{path}:1: empty file (expected the header '10\\t300')")
    folds, half = _header(path, lines[0])
    body = lines[1:]
    expected = folds * 2 * half
    if len(body) != expected:
        first_wrong = len(lines) + 1 if len(body) < expected else expected + 2
        raise DatasetLayoutError(
            f"{path}:{first_wrong}: expected {expected} pair lines ({folds} folds x 2 x {half}) "
            f"after the header, found {len(body)}"
        )
    return [
        _pair(path, index + 2, line, index, index // (2 * half), index % (2 * half) < half)
        for index, line in enumerate(body)
    ]


class LFWDataset:
    """The pairs of `root/pairs.txt` checked against the images under `root/lfw/`."""

    def __init__(
        self, root: str | Path, pairs: str | Path | None = None, allow_missing: bool = False
    ) -> None:
        self.root = Path(root)
        self.images = require_path(self.root, IMAGES_DIR, _LAYOUT, folder=True)
        pairs_path = (
            Path(pairs) if pairs is not None else require_path(self.root, PAIRS_FILE, _LAYOUT)
        )
        self.pairs = parse_pairs(pairs_path)
        used = sorted({p for pair in self.pairs for p in (pair.path_a, pair.path_b)})
        missing = [str(p) for p in used if not (self.images / p).is_file()]
        check_missing(missing, len(used), self.images, allow_missing)
        absent = set(missing)
        self.missing = len(absent)
        if absent:
            self.pairs = [
                p for p in self.pairs if str(p.path_a) not in absent and str(p.path_b) not in absent
            ]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> LFWPair:
        return self.pairs[index]

    def path(self, relative: Path) -> Path:
        """The absolute file of a pair's `path_a`/`path_b`."""
        return self.images / relative

    def face_records(self, split: str | None = None) -> list[FaceRecord]:
        """Each image used by the pairs once, split = its fold ("fold0".."fold9")."""
        seen: dict[Path, FaceRecord] = {}
        for pair in self.pairs:
            for rel, who in ((pair.path_a, pair.identity_a), (pair.path_b, pair.identity_b)):
                if rel not in seen:
                    seen[rel] = FaceRecord(
                        self.images / rel, who, f"{IMAGES_DIR}/{rel.as_posix()}", f"fold{pair.fold}"
                    )
        records = sorted(seen.values(), key=lambda r: r.image_id)
        return [r for r in records if split in (None, "all", r.split)]
