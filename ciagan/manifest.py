"""The preprocessing manifest: one CSV row per face crop, a failure log, and a run summary.

Files in a preprocessing output folder (`python -m ciagan.preprocess ... out=DIR`):

- `manifest.csv`: header + one row per face (`MANIFEST_COLUMNS`). `box` is `[x0, y0, x1, y1]`
  in edge coordinates, `landmarks` the 68 dlib points `[[x, y], ...]` in *source image*
  pixel-index coordinates, `transform` `CropTransform.to_list()` (source -> crop), all JSON.
  `crop` is the crop PNG's path relative to DIR; `faces_in_image` is how many rows the image
  has, so an image whose rows were cut short by a crash is recognised and redone.
- `failures.csv`: one row per image that gave no crop (`FAILURE_COLUMNS`; `reason` is one of
  `FAILURE_REASONS`), or per face that failed in an image whose other faces are in the manifest.
- `summary.json`: the counts of the last run (see `ciagan.preprocess.preprocess`).
- `settings.json`: dataset, detector and crop settings, checked when a run resumes, so one
  folder never mixes two datasets or crop geometries.

Rows are appended and flushed once per image, so a crash loses at most the images in flight;
`ManifestWriter` repairs a half-written last line, drops incomplete images and duplicate rows
when it opens a folder, and `finalize()` rewrites both files sorted (a run's result does not
depend on the order worker processes finished in).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from deid.errors import DeidError
from deid.faces.align import CropTransform
from deid.media import atomic_write

MANIFEST = "manifest.csv"
FAILURES = "failures.csv"
SUMMARY = "summary.json"
SETTINGS = "settings.json"
MANIFEST_COLUMNS = (
    "source",
    "identity",
    "split",
    "face",
    "faces_in_image",
    "status",
    "score",
    "box",
    "landmarks",
    "transform",
    "crop",
)
FAILURE_COLUMNS = ("source", "identity", "split", "reason", "detail")
FAILURE_REASONS = {
    "missing": "the file does not exist",
    "empty": "the file has 0 bytes",
    "unreadable": "not an image, truncated or corrupt",
    "no_face": "the detector found no face",
    "bad_landmarks": "landmarks unusable for the eye crop (e.g. coinciding eye corners)",
    "error": "any other exception while processing the image (type and message in detail)",
}
COMMAND = "python -m ciagan.preprocess data=<dataset> out={out}"
log = logging.getLogger("ciagan.preprocess")


@dataclass(frozen=True, eq=False)
class FaceEntry:
    """One face crop of the manifest (a row of manifest.csv)."""

    source: str  # the image id: the image's path relative to the dataset root
    identity: str
    split: str
    face: int  # index of the face in its image, faces sorted left to right by box x0
    box: tuple[float, float, float, float]  # detector box x0, y0, x1, y1 (edge coordinates)
    score: float  # detector score
    landmarks: np.ndarray  # (68, 2) dlib points in source-image pixel-index coordinates
    transform: CropTransform  # source image -> crop
    crop: str  # the crop PNG, relative to the output folder
    status: str = "ok"

    def __post_init__(self) -> None:
        points = np.asarray(self.landmarks, dtype=np.float64)
        if points.shape != (68, 2):
            raise ValueError(f"{self.source}: expected (68, 2) landmarks, got {points.shape}")
        object.__setattr__(self, "landmarks", points)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "face", int(self.face))

    @property
    def key(self) -> tuple[str, int]:
        """(source, face): unique within a manifest."""
        return self.source, self.face

    def crop_landmarks(self) -> np.ndarray:
        """(68, 2) landmarks in crop pixel-index coordinates."""
        return self.transform.apply(self.landmarks)

    def crop_path(self, out_dir: str | Path) -> Path:
        """The crop PNG inside the output folder `out_dir`."""
        return Path(out_dir) / self.crop

    def to_row(self, faces_in_image: int) -> dict[str, str]:
        """The CSV row (all strings); `faces_in_image` = rows this image has in the manifest."""
        return {
            "source": self.source,
            "identity": self.identity,
            "split": self.split,
            "face": str(self.face),
            "faces_in_image": str(int(faces_in_image)),
            "status": self.status,
            "score": repr(self.score),
            "box": _json(list(self.box)),
            "landmarks": _json(self.landmarks.tolist()),
            "transform": _json(self.transform.to_list()),
            "crop": self.crop,
        }

    @classmethod
    def from_row(cls, row: dict[str, str]) -> FaceEntry:
        """Parse a CSV row; raises ValueError (or KeyError) for a malformed one."""
        return cls(
            source=row["source"],
            identity=row["identity"],
            split=row["split"],
            face=int(row["face"]),
            box=tuple(json.loads(row["box"])),
            score=float(row["score"]),
            landmarks=np.asarray(json.loads(row["landmarks"]), dtype=np.float64),
            transform=CropTransform.from_list(json.loads(row["transform"])),
            crop=row["crop"],
            status=row["status"],
        )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def failure_row(source: str, identity: str, split: str, reason: str, detail: str) -> dict[str, str]:
    """A failures.csv row; `detail` is flattened to one line."""
    if reason not in FAILURE_REASONS:
        raise ValueError(f"unknown failure reason {reason!r}; known: {', '.join(FAILURE_REASONS)}")
    return {
        "source": source,
        "identity": identity,
        "split": split,
        "reason": reason,
        "detail": " ".join(str(detail).split()),
    }


# ---------------------------------------------------------------------------- reading


@dataclass
class _Parsed:
    rows: list[dict[str, str]]  # well-formed rows, in file order, duplicates removed
    dropped: int  # torn, malformed, duplicate or incomplete-image rows
    torn: bool  # the file did not end with a newline


def _read_rows(path: Path, columns: Sequence[str]) -> _Parsed:
    """Rows of a CSV written by `ManifestWriter`, tolerating a half-written last line."""
    torn = False

    def complete_lines(handle: IO[str]) -> Iterator[str]:
        nonlocal torn
        for line in handle:
            if line.endswith("\n"):
                yield line
            else:  # only the last line can lack its newline: a write cut short
                torn = True

    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(complete_lines(handle))
        header = next(reader, None)
        if header is None:
            return _Parsed([], int(torn), torn)
        if tuple(header) != tuple(columns):
            raise DeidError(
                f"{path}: unexpected columns {','.join(header)} (expected "
                f"{','.join(columns)}); it was written by another version: delete the output "
                "folder or choose another out="
            )
        rows, dropped, seen = [], 0, set()
        for values in reader:
            if len(values) != len(columns):
                dropped += 1
                continue
            key = tuple(values)
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            rows.append(dict(zip(columns, values, strict=True)))
    return _Parsed(rows, dropped + int(torn), torn)


def _complete_rows(parsed: _Parsed) -> tuple[list[dict[str, str]], int]:
    """Rows of the images all of whose rows are present, sorted by (source, face), and how
    many rows were dropped (torn, duplicate, or of an image a crash cut short)."""
    groups: dict[str, dict[int, dict[str, str]]] = {}
    expected: dict[str, int] = {}
    dropped = parsed.dropped
    for row in parsed.rows:
        try:
            face, count = int(row["face"]), int(row["faces_in_image"])
        except ValueError:
            dropped += 1
            continue
        source = row["source"]
        group = groups.setdefault(source, {})
        if face in group or expected.setdefault(source, count) != count:
            dropped += 1  # a second row for the same face, or disagreeing counts
            continue
        group[face] = row
    rows = []
    for source in sorted(groups):
        group = groups[source]
        if len(group) != expected[source]:
            dropped += len(group)
            continue
        rows.extend(group[face] for face in sorted(group))
    return rows, dropped


def _require(out_dir: Path, name: str) -> Path:
    path = out_dir / name
    if not path.is_file():
        raise DeidError(
            f"{path}: not found; create it with `{COMMAND.format(out=out_dir)}` "
            "(the same data= and out= as before)"
        )
    return path


def read_manifest(out_dir: str | Path) -> list[FaceEntry]:
    """Every face of a preprocessing output folder, sorted by (source, face).

    Rows of an image a crash cut short are left out (a re-run of the preprocessing redoes
    them); a missing manifest is a DeidError naming the command that makes it.
    """
    out_dir = Path(out_dir)
    path = _require(out_dir, MANIFEST)
    rows, dropped = _complete_rows(_read_rows(path, MANIFEST_COLUMNS))
    if dropped:
        log.warning(
            "%s: ignored %d rows of images whose preprocessing did not finish; re-run "
            "the preprocessing to redo them",
            path,
            dropped,
        )
    entries = []
    for row in rows:
        try:
            entries.append(FaceEntry.from_row(row))
        except (ValueError, TypeError) as err:
            raise DeidError(
                f"{path}: the row of {row['source']} face {row['face']} is malformed ({err}); "
                "delete that row and run the preprocessing again to redo the image"
            ) from None
    return entries


def read_failures(out_dir: str | Path) -> list[dict[str, str]]:
    """The failure log: dicts with `FAILURE_COLUMNS` keys, sorted by source."""
    out_dir = Path(out_dir)
    parsed = _read_rows(_require(out_dir, FAILURES), FAILURE_COLUMNS)
    return sorted(parsed.rows, key=lambda r: (r["source"], r["reason"], r["detail"]))


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when it is absent."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DeidError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DeidError(f"{path}: expected a JSON object")
    return data


# ---------------------------------------------------------------------------- writing


def _csv_text(rows: Iterable[dict[str, str]], columns: Sequence[str], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _rewrite(path: Path, rows: Iterable[dict[str, str]], columns: Sequence[str]) -> None:
    with atomic_write(path) as handle:
        handle.write(_csv_text(rows, columns, header=True))


def check_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    """Record `settings` (JSON types) in settings.json, or check they equal the recorded ones.

    A folder is resumed only with the dataset, detector and crop settings it was made with.
    """
    path = out_dir / SETTINGS
    previous = read_json(path)
    if previous is None:
        with atomic_write(path) as handle:
            json.dump(settings, handle, indent=2)
        return
    if previous != settings:
        changed = sorted(
            k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k)
        )
        raise DeidError(
            f"{out_dir} holds a preprocessing made with other {', '.join(changed)} settings "
            f"(see {path}); choose another out= or delete the folder"
        )


def _lock(out_dir: Path) -> IO[str] | None:
    """An exclusive lock on `out_dir/.lock`, held while the returned file is open.

    Two runs appending to one folder would interleave and overwrite each other's rows; the
    second one fails at once instead. No lock where `fcntl` is missing (Windows).
    """
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(out_dir / ".lock", "a", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DeidError(
            f"{out_dir}: another preprocessing run is writing to this folder; "
            "wait for it to finish or choose another out="
        ) from None
    return handle


class ManifestWriter:
    """Appends one image's rows at a time to manifest.csv / failures.csv in `out_dir`.

    Opening repairs what a crash can leave (a torn last line, an image with only some of its
    rows, duplicate rows) and records which images are done: `done` holds every source with
    complete manifest rows or a failure row, which a run skips.
    """

    def __init__(
        self,
        out_dir: str | Path,
        settings: dict[str, Any] | None = None,
        retry: Iterable[str] = (),
    ) -> None:
        """`settings`: see `check_settings`; `retry`: sources whose failure rows are dropped so
        they are processed again (only images without manifest rows: a partly failed image
        keeps its failure rows)."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.out_dir / MANIFEST
        self.failures_path = self.out_dir / FAILURES
        self.repaired = 0  # rows dropped while opening
        self._faces: Counter[str] = Counter()  # source -> face rows
        self._face_rows = 0
        self._failures: dict[str, list[str]] = {}  # source -> failure reasons
        self._files: list[IO[str]] = []
        self._lock = _lock(self.out_dir)
        try:
            if settings is not None:
                check_settings(self.out_dir, settings)
            self._open_manifest()
            # an image with crops in the manifest is done even if some of its faces failed
            self._open_failures(set(retry) - set(self._faces))
            self._files = [
                open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115
                for path in (self.manifest_path, self.failures_path)
            ]
        except BaseException:
            self.close()
            raise

    def _open_manifest(self) -> None:
        if not self.manifest_path.is_file() or self.manifest_path.stat().st_size == 0:
            _rewrite(self.manifest_path, [], MANIFEST_COLUMNS)
            return
        parsed = _read_rows(self.manifest_path, MANIFEST_COLUMNS)
        rows, dropped = _complete_rows(parsed)
        if dropped or parsed.torn:
            _rewrite(self.manifest_path, rows, MANIFEST_COLUMNS)
            self.repaired += dropped
        self._faces.update(r["source"] for r in rows)
        self._face_rows = len(rows)

    def _open_failures(self, retry: set[str]) -> None:
        if not self.failures_path.is_file() or self.failures_path.stat().st_size == 0:
            _rewrite(self.failures_path, [], FAILURE_COLUMNS)
            return
        parsed = _read_rows(self.failures_path, FAILURE_COLUMNS)
        rows = [r for r in parsed.rows if r["source"] not in retry]
        if parsed.dropped or parsed.torn or len(rows) != len(parsed.rows):
            _rewrite(self.failures_path, rows, FAILURE_COLUMNS)
            self.repaired += parsed.dropped
        for row in rows:
            self._failures.setdefault(row["source"], []).append(row["reason"])

    @property
    def done(self) -> set[str]:
        """Sources with complete manifest rows or a failure row: a run skips them."""
        return set(self._faces) | set(self._failures)

    def add(self, entries: Sequence[FaceEntry], failures: Sequence[dict[str, str]] = ()) -> None:
        """Append one image's face rows and failure rows, and flush both files."""
        if entries:
            rows = [e.to_row(len(entries)) for e in entries]
            self._files[0].write(_csv_text(rows, MANIFEST_COLUMNS, header=False))
            self._files[0].flush()
            self._faces[entries[0].source] += len(entries)
            self._face_rows += len(entries)
        if failures:
            self._files[1].write(_csv_text(failures, FAILURE_COLUMNS, header=False))
            self._files[1].flush()
            for row in failures:
                self._failures.setdefault(row["source"], []).append(row["reason"])

    @property
    def faces(self) -> int:
        """Face rows in the manifest."""
        return self._face_rows

    @property
    def images_with_faces(self) -> int:
        return len(self._faces)

    def failure_counts(self) -> dict[str, int]:
        """Failure rows by reason, sorted by reason."""
        counts = Counter(reason for reasons in self._failures.values() for reason in reasons)
        return dict(sorted(counts.items()))

    def finalize(self) -> None:
        """Close the files, then rewrite both sorted (manifest by source and face, failures by
        source) without duplicates, so the result does not depend on the workers' order."""
        self.close_files()
        rows, _ = _complete_rows(_read_rows(self.manifest_path, MANIFEST_COLUMNS))
        _rewrite(self.manifest_path, rows, MANIFEST_COLUMNS)
        failures = _read_rows(self.failures_path, FAILURE_COLUMNS).rows
        failures.sort(key=lambda r: (r["source"], r["reason"], r["detail"]))
        _rewrite(self.failures_path, failures, FAILURE_COLUMNS)
        self._failures = {}
        for row in failures:
            self._failures.setdefault(row["source"], []).append(row["reason"])

    def close_files(self) -> None:
        for handle in self._files:
            handle.close()

    def close(self) -> None:
        """Close the files and release the folder's lock."""
        self.close_files()
        if self._lock is not None and not self._lock.closed:
            self._lock.close()  # closing the lock file releases the lock

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
