"""A run's numbers in long format (one number a row), and the per-run view tables and plots use.

`result_rows` flattens a results dict into `CSV_FIELDS` rows; `ReportRun` keys the same numbers by
(metric, variant, k) and `group_runs` splits runs by dataset and split.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deid_eval import paper_numbers as paper

CSV_FIELDS = ("method", "dataset", "split", "metric", "variant", "k", "value", "unit")

# Per-variant fields of the sections keyed by detector / embedder: key -> (metric, unit).
_FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "detection": {
        "rate": ("detection_rate", "fraction"),
        "threshold": ("detection_threshold", "score"),
        "evaluated": ("detection_evaluated", "images"),
    },
    "lfw": {
        "tar_mean": ("lfw_tar", "fraction"),
        "tar_std": ("lfw_tar_std", "fraction"),
        "far_mean": ("lfw_far", "fraction"),
        "accuracy_mean": ("lfw_accuracy", "fraction"),
        "accuracy_std": ("lfw_accuracy_std", "fraction"),
        "anonymized_face_misses": ("lfw_anonymized_face_misses", "images"),
    },
}
_SCALARS: dict[str, dict[str, tuple[str, str]]] = {
    "fid": {"value": ("fid", "score"), "samples": ("fid_samples", "images")},
    "kid": {
        "mean": ("kid_mean", "score"),
        "std": ("kid_std", "score"),
        "subsets": ("kid_subsets", "count"),
        "subset_size": ("kid_subset_size", "images"),
    },
}
_AT_K = re.compile(r"^(recall|linkability)@(\d+)$")

Key = tuple[str, str, int | None]


def _number(value: Any) -> float | None:
    """A JSON number as written (ints stay ints: counts read better), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _int_key(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _reid_values(variant: str, entry: dict[str, Any]) -> Iterable[tuple[Key, float, str]]:
    ks = entry.get("ks") if isinstance(entry.get("ks"), dict) else {}
    for k_raw, per_k in ks.items():
        k = _int_key(k_raw)
        if k is None or not isinstance(per_k, dict):
            continue
        for name in ("recall", "linkability"):
            if (v := _number(per_k.get(name))) is not None:
                yield (f"reid_{name}", variant, k), v, "fraction"
    for key, raw in entry.items():
        if (v := _number(raw)) is None:
            continue
        if match := _AT_K.match(key):
            yield (f"reid_{match[1]}", variant, int(match[2])), v, "fraction"
        elif key == "chance":
            yield ("reid_chance", variant, None), v, "fraction"
        else:
            yield (f"reid_{key}", variant, None), v, ""


def _silhouette_values(section: dict[str, Any]) -> Iterable[tuple[Key, float, str]]:
    backbone = str(section.get("backbone", ""))
    for name in ("reid", "deid_success"):
        per_k = section.get(name)
        for k_raw, raw in per_k.items() if isinstance(per_k, dict) else ():
            k, v = _int_key(k_raw), _number(raw)
            if k is not None and v is not None:
                yield (f"silhouette_{name}", backbone, k), v, "fraction"


def _generic_values(prefix: str, node: Any) -> Iterable[tuple[Key, float, str]]:
    """Numbers of a section the report does not know, so the CSV never drops a result."""
    if (v := _number(node)) is not None:
        yield (prefix, "", None), v, ""
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from _generic_values(f"{prefix}.{key}", child)


def _threshold_values(
    name: str, variant: str, by_threshold: dict[str, Any], headline: Any
) -> Iterable[tuple[Key, float, str]]:
    """Detection rates at extra thresholds become variants `detector@threshold` (the headline
    threshold is the plain `detector` variant already)."""
    for threshold, entry in by_threshold.items():
        if headline is not None and float(threshold) == float(headline):
            continue
        for key, raw in (entry or {}).items():
            if (v := _number(raw)) is not None:
                metric, unit = _FIELDS[name].get(key, (f"{name}_{key}", ""))
                yield (metric, f"{variant}@{threshold}", None), v, unit


def _section_values(name: str, section: dict[str, Any]) -> Iterable[tuple[Key, float, str]]:
    if name in _FIELDS or name == "reid":
        for variant, entry in section.items():
            if not isinstance(entry, dict):
                continue
            if name == "reid":
                yield from _reid_values(variant, entry)
                continue
            for key, raw in entry.items():
                if key == "by_threshold" and isinstance(raw, dict):
                    yield from _threshold_values(name, variant, raw, entry.get("threshold"))
                elif (v := _number(raw)) is not None:
                    metric, unit = _FIELDS[name].get(key, (f"{name}_{key}", ""))
                    yield (metric, variant, None), v, unit
    elif name in _SCALARS:
        for key, raw in section.items():
            if (v := _number(raw)) is not None:
                metric, unit = _SCALARS[name].get(key, (f"{name}_{key}", ""))
                yield (metric, "", None), v, unit
    elif name == "silhouette_knn":
        yield from _silhouette_values(section)
    else:
        yield from _generic_values(name, section)


def result_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One run's numbers in long format (CSV_FIELDS); the first value of a repeated key wins."""
    dataset = results.get("dataset") or {}
    base = {
        "method": results.get("method", ""),
        "dataset": dataset.get("name", ""),
        "split": dataset.get("split", ""),
    }
    rows, seen = [], set()
    for name, section in (results.get("metrics") or {}).items():
        if not isinstance(section, dict):
            continue
        for key, value, unit in _section_values(name, section):
            if key in seen:
                continue
            seen.add(key)
            metric, variant, k = key
            rows.append(
                {**base, "metric": metric, "variant": variant, "k": k, "value": value, "unit": unit}
            )
    return rows


# ---------------------------------------------------------------------------------------------
# One run, as the tables see it


@dataclass
class ReportRun:
    result: dict[str, Any]
    label: str
    values: dict[Key, float] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.result["method"]

    @property
    def dataset(self) -> dict[str, Any]:
        return self.result.get("dataset") or {}

    def get(self, metric: str, variant: str = "", k: int | None = None) -> float | None:
        return self.values.get((metric, variant, k))

    def variants(self, metric: str) -> set[str]:
        return {v for (m, v, _) in self.values if m == metric}

    def ks(self, metric: str, variant: str) -> list[int]:
        return sorted(k for (m, v, k) in self.values if m == metric and v == variant and k)


def report_runs(results_list: Sequence[dict[str, Any]]) -> list[ReportRun]:
    runs = [
        ReportRun(r, str(r.get("method_label") or r["method"]), _values(r))
        for r in sorted(results_list, key=lambda r: paper.method_rank(r["method"]))
    ]
    labels = [(r.label, group_name(r)) for r in runs]
    for run in runs:
        if labels.count((run.label, group_name(run))) > 1:
            where = Path(run.result.get("_source", "")).parent.name or str(runs.index(run))
            run.label = f"{run.label} [{where}]"
    return runs


def _values(results: dict[str, Any]) -> dict[Key, float]:
    return {(r["metric"], r["variant"], r["k"]): r["value"] for r in result_rows(results)}


def group_name(run: ReportRun) -> str:
    """Dataset, split and what was scored: runs on whole photos and on aligned crops of the
    same photos are different tables."""
    name, split = run.dataset.get("name", "?"), run.dataset.get("split")
    align = (run.result.get("protocol") or {}).get("align")
    parts = [str(split)] if split else []
    if align and align != "none":
        parts.append(f"{align} crops")
    return f"{name} ({', '.join(parts)})" if parts else str(name)


def group_runs(runs: list[ReportRun]) -> list[tuple[str, list[ReportRun]]]:
    """Runs by (dataset, split), in order of first appearance; each group gets its tables."""
    groups: dict[str, list[ReportRun]] = {}
    for run in runs:
        groups.setdefault(group_name(run), []).append(run)
    return list(groups.items())
