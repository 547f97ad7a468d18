"""What an anonymization run did, per file and in total: printed at the end and written as JSON.

Face counts: `faces_found` are detections (every frame of a video), `faces_interpolated` the
faces gap filling added where the detector missed a tracked face; each of them is either
`anonymized` by the chosen method or given the fallback, so
`faces_found + faces_interpolated == anonymized + fallbacks`.
Nothing secret is recorded: at most the key's 8-digit sha256 fingerprint when one was given.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deid.media import atomic_write


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass
class FileRecord:
    """One input file's outcome."""

    input: str
    output: str
    kind: str
    status: str = "ok"  # "ok" or "failed"
    reason: str | None = None  # why it failed
    note: str | None = None  # e.g. a changed extension
    frames: int = 0
    faces_found: int = 0
    faces_interpolated: int = 0
    anonymized: int = 0
    fallbacks: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    identities: dict[str, int] | None = None  # track (video) / face index (image) -> identity
    audit_checked: int | None = None
    audit_flagged: list[dict[str, Any]] | None = None
    seconds: float = 0.0

    def add_fallbacks(self, reasons: list[str]) -> None:
        self.fallbacks += len(reasons)
        for reason in reasons:
            self.fallback_reasons[reason] = self.fallback_reasons.get(reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Summary:
    """The whole run: settings, totals, failures, audit, every file."""

    settings: dict[str, Any]
    audit: bool = False
    records: list[FileRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[FileRecord]:
        return [r for r in self.records if r.status != "ok"]

    @property
    def flagged(self) -> list[FileRecord]:
        return [r for r in self.records if r.audit_flagged]

    def counts(self) -> dict[str, int]:
        done = [r for r in self.records if r.status == "ok"]
        return {
            "files": len(self.records),
            "images": sum(r.kind == "image" for r in done),
            "videos": sum(r.kind == "video" for r in done),
            "frames": sum(r.frames for r in done if r.kind == "video"),
            "faces_found": sum(r.faces_found for r in done),
            "faces_interpolated": sum(r.faces_interpolated for r in done),
            "anonymized": sum(r.anonymized for r in done),
            "fallbacks": sum(r.fallbacks for r in done),
            "failures": len(self.failures),
        }

    def to_json(self) -> dict[str, Any]:
        reasons: Counter[str] = Counter()
        for record in self.records:
            reasons.update(record.fallback_reasons)
        data: dict[str, Any] = {
            **self.settings,
            "counts": self.counts(),
            "fallback_reasons": dict(reasons.most_common()),
            "failures": [{"file": r.input, "reason": r.reason} for r in self.failures],
        }
        if self.audit:
            data["audit"] = {
                r.input: r.audit_flagged or [] for r in self.records if r.audit_checked is not None
            }
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
            f"faces: {c['faces_found']} found, {c['faces_interpolated']} gap-filled, "
            f"{c['anonymized']} anonymized by {name}, {c['fallbacks']} fell back to "
            f"{self.settings.get('fallback', '?')}",
        ]
        if self.failures:
            lines.append(f"failures: {_n(len(self.failures), 'file')} skipped")
            lines += [f"  {r.input}: {r.reason}" for r in self.failures]
        if self.audit:
            if self.flagged:
                lines.append(
                    f"audit: {_n(len(self.flagged), 'file')} with faces still matching their source:"
                )
                lines += [
                    f"  {r.input}: {_n(len(r.audit_flagged or []), 'face')}" for r in self.flagged
                ]
            else:
                checked = sum(r.audit_checked or 0 for r in self.records)
                lines.append(f"audit: no output face matches its source ({checked} compared)")
        return "\n".join(lines)
