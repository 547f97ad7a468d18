"""What an anonymization run did, per file and in total: written after every file, printed at
the end.

Face counts: `faces_found` are detections (every frame of a video), `faces_interpolated` the
faces tracking added where the detector missed or did not look at a tracked face; each of them
is either `anonymized` by the chosen method or given the fallback, so
`faces_found + faces_interpolated == anonymized + fallbacks`. `method_fallbacks` counts regions
the method itself covered with a fallback of its own (e.g. persons a body method could not
synthesize); their reasons join `fallback_reasons`.

The audit counts (with `--audit`): faces the independent audit detector found in the originals,
how many of them were covered by an anonymized region, missed (not covered), and still matching
their source in the output.

The summary JSON is rewritten atomically after each file, so a crashed or killed batch leaves a
record of what finished; it also carries each input's size and mtime and a fingerprint of the
run's settings, which is how a re-run knows which outputs are complete (`completed_outputs`).
Nothing secret is recorded: at most the key's 8-digit sha256 fingerprint when one was given.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deid.anonymizers.audit import AuditReport
from deid.media import atomic_write


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def settings_fingerprint(fields: dict[str, Any]) -> str:
    """sha256 of the settings that decide an output's content (16 hex digits)."""
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class FileRecord:
    """One input file's outcome."""

    input: str
    output: str
    kind: str
    status: str = "ok"  # "ok" or "failed"
    reason: str | None = None  # why it failed
    note: str | None = None  # e.g. a changed extension, or "complete from an earlier run"
    input_size: int | None = None
    input_mtime: float | None = None
    frames: int = 0
    faces_found: int = 0
    faces_interpolated: int = 0
    anonymized: int = 0
    fallbacks: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    method_fallbacks: int = 0
    identities: dict[str, int] | None = None  # track (video) / face index (image) -> identity
    audit: AuditReport | None = None
    seconds: float = 0.0
    reused: bool = False  # complete from an earlier run with the same settings: not redone

    def add_fallbacks(self, reasons: list[str], method: bool = False) -> None:
        """Count face fallbacks, or (`method`) regions the method fell back on itself."""
        if method:
            self.method_fallbacks += len(reasons)
        else:
            self.fallbacks += len(reasons)
        for reason in reasons:
            self.fallback_reasons[reason] = self.fallback_reasons.get(reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None and k != "audit"}
        if self.audit is not None:
            data["audit"] = self.audit.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "audit"}
        record = cls(**known)
        audit = data.get("audit")
        if isinstance(audit, dict):
            record.audit = AuditReport(
                found=int(audit.get("found", 0)),
                covered=int(audit.get("covered", 0)),
                compared=int(audit.get("compared", 0)),
                closest=audit.get("closest"),
                missed=list(audit.get("missed_faces", [])),
                matching=list(audit.get("matching_faces", [])),
            )
        return record


@dataclass
class Summary:
    """The whole run: settings, totals, failures, audit, every file."""

    settings: dict[str, Any]
    fingerprint: str = ""
    audit: bool = False
    records: list[FileRecord] = field(default_factory=list)
    seconds: float = 0.0
    finished: bool = False  # False while the batch runs (and in the file a killed run left)

    @property
    def failures(self) -> list[FileRecord]:
        return [r for r in self.records if r.status != "ok"]

    @property
    def flagged(self) -> list[FileRecord]:
        """Files whose audit found a missed or a still matching face."""
        return [r for r in self.records if r.audit is not None and not r.audit.ok]

    def audit_totals(self) -> AuditReport:
        total = AuditReport()
        for record in self.records:
            if record.audit is not None:
                total.add(record.audit)
        return total

    def counts(self) -> dict[str, Any]:
        done = [r for r in self.records if r.status == "ok"]
        counts = {
            "files": len(self.records),
            "reused": sum(r.reused for r in done),
            "images": sum(r.kind == "image" for r in done),
            "videos": sum(r.kind == "video" for r in done),
            "frames": sum(r.frames for r in done if r.kind == "video"),
            "faces_found": sum(r.faces_found for r in done),
            "faces_interpolated": sum(r.faces_interpolated for r in done),
            "anonymized": sum(r.anonymized for r in done),
            "fallbacks": sum(r.fallbacks for r in done),
            "method_fallbacks": sum(r.method_fallbacks for r in done),
            "failures": len(self.failures),
        }
        if self.audit:
            totals = self.audit_totals()
            counts |= {
                "audit_closest": totals.closest,
                "audit_found": totals.found,
                "audit_covered": totals.covered,
                "audit_missed": len(totals.missed),
                "audit_still_matching": len(totals.matching),
            }
        return counts

    def to_json(self) -> dict[str, Any]:
        reasons: Counter[str] = Counter()
        for record in self.records:
            reasons.update(record.fallback_reasons)
        data: dict[str, Any] = {
            **self.settings,
            "settings_fingerprint": self.fingerprint,
            "finished": self.finished,
            "counts": self.counts(),
            "fallback_reasons": dict(reasons.most_common()),
            "failures": [{"file": r.input, "reason": r.reason} for r in self.failures],
        }
        if self.audit:
            data["audit_flagged_files"] = [r.input for r in self.flagged]
        data["files"] = [r.to_json() for r in self.records]
        data["seconds"] = round(self.seconds, 2)
        return data

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w") as handle:
            json.dump(self.to_json(), handle, indent=2)
            handle.write("\n")
        return path

    def text(self) -> str:
        c = self.counts()
        name = self.settings.get("anonymizer", "?")
        lines = [
            f"anonymized {_n(c['images'], 'image')} and {_n(c['videos'], 'video')} "
            f"({_n(c['frames'], 'frame')}) of {_n(c['files'], 'file')} with {name} "
            f"in {self.seconds:.1f} s",
            f"faces: {c['faces_found']} found, {c['faces_interpolated']} tracked in between, "
            f"{c['anonymized']} anonymized by {name}, {c['fallbacks']} fell back to "
            f"{self.settings.get('fallback', '?')}",
        ]
        if c["method_fallbacks"]:
            lines.append(
                f"{_n(c['method_fallbacks'], 'region')} {name} could not process got its own "
                "fallback (reasons in the summary)"
            )
        if c["reused"]:
            lines.append(
                f"{_n(c['reused'], 'file')} complete from an earlier run with the same "
                "settings, not redone (--overwrite redoes them)"
            )
        if self.failures:
            lines.append(f"failures: {_n(len(self.failures), 'file')} skipped")
            lines += [f"  {r.input}: {r.reason}" for r in self.failures]
        if self.audit:
            lines.append(
                f"audit: {c['audit_found']} faces found in the originals by "
                f"{self.settings.get('audit_detector', 'the audit detector')}: "
                f"{c['audit_covered']} covered, {c['audit_missed']} missed, "
                f"{c['audit_still_matching']} still matching their source"
                + (f" (closest {c['audit_closest']:.2f})" if c["audit_closest"] is not None else "")
            )
            for record in self.flagged:
                assert record.audit is not None
                lines.append(
                    f"  {record.input}: {len(record.audit.missed)} missed, "
                    f"{len(record.audit.matching)} still matching"
                )
        return "\n".join(lines)


def completed_outputs(path: Path, fingerprint: str) -> dict[str, FileRecord]:
    """The records of an earlier run's summary at `path` that a re-run can keep: made with the
    same settings (`fingerprint`), status ok, output present, input unchanged (size, mtime)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("settings_fingerprint") != fingerprint:
        return {}
    kept: dict[str, FileRecord] = {}
    for entry in data.get("files", []):
        try:
            record = FileRecord.from_json(entry)
            source = Path(record.input).stat()
        except (OSError, TypeError, ValueError):
            continue
        if (
            record.status == "ok"
            and Path(record.output).is_file()
            and record.input_size == source.st_size
            and record.input_mtime == source.st_mtime
        ):
            kept[record.input] = record
    return kept
