"""The preprocessing manifest: one CSV row per crop, a failure log, and the folder's settings.

Generic over the entry type (`deid.prep.faces.FaceEntry`, `deid.prep.bodies.BodyEntry`, or a
new method's own): an entry class names its CSV `COLUMNS`, the column that numbers it within
its image (`INDEX`, e.g. `face`), the column holding how many rows its image has (`COUNT`,
e.g. `faces_in_image`: an image whose rows a crash cut short is recognised and redone), the
`COMMAND` that makes a folder of them, and converts itself with `to_row(count)` / `from_row`.

Files in a preprocessing output folder:

- `manifest.csv`: header + one row per crop (the entry's `COLUMNS`).
- `failures.csv`: one row per image that gave no crop (`FAILURE_COLUMNS`; `reason` is one of
  the driver's reasons), or per crop that failed in an image whose other crops are listed.
- `summary.json`: the counts of the last run (see `deid.prep.run`).
- `settings.json`: dataset and crop settings, checked when a run resumes, so one folder never
  mixes two datasets or crop geometries.

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol, TypeVar

from deid.errors import DeidError, unknown_name
from deid.media import atomic_write

MANIFEST = "manifest.csv"
FAILURES = "failures.csv"
SUMMARY = "summary.json"
SETTINGS = "settings.json"
FAILURE_COLUMNS = ("source", "identity", "split", "reason", "detail")
# every driver's failure reasons start with these (an image it could not read or process)
IMAGE_FAILURES = {
    "missing": "the file does not exist",
    "empty": "the file has 0 bytes",
    "unreadable": "not an image, truncated or corrupt",
}
ERROR_FAILURE = {
    "error": "any other exception while processing the image (type and message in detail)"
}
log = logging.getLogger("deid.prep")


class Entry(Protocol):
    """What the manifest needs of an entry type (a frozen dataclass in practice)."""

    COLUMNS: ClassVar[tuple[str, ...]]
    INDEX: ClassVar[str]
    COUNT: ClassVar[str]
    COMMAND: ClassVar[str]  # with `{out}` for the folder

    @property
    def source(self) -> str: ...

    def to_row(self, count: int) -> dict[str, str]: ...

    @classmethod
    def from_row(cls, row: dict[str, str]) -> Entry: ...


E = TypeVar("E", bound=Entry)


@dataclass
class ImageResult:
    """What processing one image gave (a worker's result): its entries and/or failure rows."""

    source: str
    entries: list[Any] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


def json_cell(value: Any) -> str:
    """A compact JSON value for a CSV cell."""
    return json.dumps(value, separators=(",", ":"))


def failure_row(
    source: str,
    identity: str,
    split: str,
    reason: str,
    detail: str,
    reasons: Mapping[str, str],
) -> dict[str, str]:
    """A failures.csv row; `reason` must be one of `reasons`; `detail` is flattened to one line."""
    if reason not in reasons:
        raise unknown_name("failure reason", reason, reasons, ValueError)
    values = (source, identity, split, reason, " ".join(str(detail).split()))
    return dict(zip(FAILURE_COLUMNS, values, strict=True))


# ---------------------------------------------------------------------------- reading


@dataclass
class ParsedRows:
    rows: list[dict[str, str]]  # well-formed rows, in file order, duplicates removed
    dropped: int  # torn, malformed or duplicate rows
    torn: bool  # the file did not end with a newline


def read_rows(path: Path, columns: Sequence[str]) -> ParsedRows:
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
            return ParsedRows([], int(torn), torn)
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
    return ParsedRows(rows, dropped + int(torn), torn)


def complete_rows(parsed: ParsedRows, entry_type: type[Entry]) -> tuple[list[dict[str, str]], int]:
    """Rows of the images all of whose rows are present, sorted by (source, index), and how
    many rows were dropped (torn, duplicate, or of an image a crash cut short)."""
    groups: dict[str, dict[int, dict[str, str]]] = {}
    expected: dict[str, int] = {}
    dropped = parsed.dropped
    for row in parsed.rows:
        try:
            index, count = int(row[entry_type.INDEX]), int(row[entry_type.COUNT])
        except ValueError:
            dropped += 1
            continue
        source = row["source"]
        group = groups.setdefault(source, {})
        if index in group or expected.setdefault(source, count) != count:
            dropped += 1  # a second row for the same crop, or disagreeing counts
            continue
        group[index] = row
    rows = []
    for source in sorted(groups):
        group = groups[source]
        if len(group) != expected[source]:
            dropped += len(group)
            continue
        rows.extend(group[index] for index in sorted(group))
    return rows, dropped


def _require(out_dir: Path, name: str, entry_type: type[Entry]) -> Path:
    path = out_dir / name
    if not path.is_file():
        raise DeidError(
            f"{path}: not found; create it with `{entry_type.COMMAND.format(out=out_dir)}` "
            "(the same data= and out= as before)"
        )
    return path


def read_entries(out_dir: str | Path, entry_type: type[E]) -> list[E]:
    """Every entry of a preprocessing output folder, sorted by (source, index).

    Rows of an image a crash cut short are left out (a re-run of the preprocessing redoes
    them); a missing manifest is a DeidError naming the command that makes it.
    """
    out_dir = Path(out_dir)
    path = _require(out_dir, MANIFEST, entry_type)
    rows, dropped = complete_rows(read_rows(path, entry_type.COLUMNS), entry_type)
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
            entries.append(entry_type.from_row(row))
        except (ValueError, TypeError) as err:
            index = entry_type.INDEX
            raise DeidError(
                f"{path}: the row of {row['source']} {index} {row[index]} is malformed ({err}); "
                "delete that row and run the preprocessing again to redo the image"
            ) from None
    return entries  # type: ignore[return-value]


def read_failures(out_dir: str | Path, entry_type: type[Entry]) -> list[dict[str, str]]:
    """The failure log: dicts with `FAILURE_COLUMNS` keys, sorted by source."""
    parsed = read_rows(_require(Path(out_dir), FAILURES, entry_type), FAILURE_COLUMNS)
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


def csv_text(rows: Iterable[dict[str, str]], columns: Sequence[str], header: bool) -> str:
    """`rows` as CSV text (newline-terminated lines), with the header line first if asked."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def rewrite(path: Path, rows: Iterable[dict[str, str]], columns: Sequence[str]) -> None:
    """Replace the CSV at `path` (atomically) with a header and `rows`."""
    with atomic_write(path) as handle:
        handle.write(csv_text(rows, columns, header=True))


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
        entry_type: type[Entry],
        settings: dict[str, Any] | None = None,
        retry: Iterable[str] = (),
    ) -> None:
        """`settings`: see `check_settings`; `retry`: sources whose failure rows are dropped so
        they are processed again (only images without manifest rows: a partly failed image
        keeps its failure rows)."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.entry_type = entry_type
        self.columns = entry_type.COLUMNS
        self.manifest_path = self.out_dir / MANIFEST
        self.failures_path = self.out_dir / FAILURES
        self.repaired = 0  # rows dropped while opening
        self._sources: Counter[str] = Counter()  # source -> manifest rows
        self._rows = 0
        self._failures: dict[str, list[str]] = {}  # source -> failure reasons
        self._files: list[IO[str]] = []
        self._lock = _lock(self.out_dir)
        try:
            if settings is not None:
                check_settings(self.out_dir, settings)
            self._open_manifest()
            # an image with crops in the manifest is done even if some of its crops failed
            self._open_failures(set(retry) - set(self._sources))
            self._files = [
                open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115
                for path in (self.manifest_path, self.failures_path)
            ]
        except BaseException:
            self.close()
            raise

    def _open_manifest(self) -> None:
        if not self.manifest_path.is_file() or self.manifest_path.stat().st_size == 0:
            rewrite(self.manifest_path, [], self.columns)
            return
        parsed = read_rows(self.manifest_path, self.columns)
        rows, dropped = complete_rows(parsed, self.entry_type)
        if dropped or parsed.torn:
            rewrite(self.manifest_path, rows, self.columns)
            self.repaired += dropped
        self._sources.update(r["source"] for r in rows)
        self._rows = len(rows)

    def _open_failures(self, retry: set[str]) -> None:
        if not self.failures_path.is_file() or self.failures_path.stat().st_size == 0:
            rewrite(self.failures_path, [], FAILURE_COLUMNS)
            return
        parsed = read_rows(self.failures_path, FAILURE_COLUMNS)
        rows = [r for r in parsed.rows if r["source"] not in retry]
        if parsed.dropped or parsed.torn or len(rows) != len(parsed.rows):
            rewrite(self.failures_path, rows, FAILURE_COLUMNS)
            self.repaired += parsed.dropped
        for row in rows:
            self._failures.setdefault(row["source"], []).append(row["reason"])

    @property
    def done(self) -> set[str]:
        """Sources with complete manifest rows or a failure row: a run skips them."""
        return set(self._sources) | set(self._failures)

    def add(self, entries: Sequence[Entry], failures: Sequence[dict[str, str]] = ()) -> None:
        """Append one image's entries and failure rows, and flush both files."""
        if entries:
            rows = [e.to_row(len(entries)) for e in entries]
            self._files[0].write(csv_text(rows, self.columns, header=False))
            self._files[0].flush()
            self._sources[entries[0].source] += len(entries)
            self._rows += len(entries)
        if failures:
            self._files[1].write(csv_text(failures, FAILURE_COLUMNS, header=False))
            self._files[1].flush()
            for row in failures:
                self._failures.setdefault(row["source"], []).append(row["reason"])

    @property
    def rows(self) -> int:
        """Entries (crops) in the manifest."""
        return self._rows

    @property
    def images_with_rows(self) -> int:
        return len(self._sources)

    def failure_counts(self) -> dict[str, int]:
        """Failure rows by reason, sorted by reason."""
        counts = Counter(reason for reasons in self._failures.values() for reason in reasons)
        return dict(sorted(counts.items()))

    def finalize(self) -> None:
        """Close the files, then rewrite both sorted (manifest by source and index, failures
        by source) without duplicates, so the result does not depend on the workers' order."""
        self.close_files()
        rows, _ = complete_rows(read_rows(self.manifest_path, self.columns), self.entry_type)
        rewrite(self.manifest_path, rows, self.columns)
        failures = read_rows(self.failures_path, FAILURE_COLUMNS).rows
        failures.sort(key=lambda r: (r["source"], r["reason"], r["detail"]))
        rewrite(self.failures_path, failures, FAILURE_COLUMNS)
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
