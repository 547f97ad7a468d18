"""Merge evaluation runs into one CSV, paper-style Markdown tables and two plots.

Why: every `python evaluate.py` run leaves a `results.json`; comparing methods means putting
many of them side by side, next to the numbers the CIAGAN and VQGAN papers print
(`deid_eval.paper_numbers`), and saying which detector, embedder and backbone were really used
(the paper's SSH detector, for one, is not available offline).

    python -m deid_eval.report multirun/evaluate/2025-01-01_12-00-00 [-o OUT_DIR]

Outputs: `results.csv` (long format, one number a row, fractions as stored), `tables.md`
(percent, paper numbers beside ours), `reid_vs_k.png`, `detection_vs_recall.png` and, for a
merged report, `summary.json`. `MergeReportCallback` writes the same into a Hydra sweep folder
when `python evaluate.py -m ...` ends.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from deid.errors import BadInputError, DeidError
from deid.media import atomic_path, atomic_write
from deid_eval import paper_numbers as paper

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
CSV_FIELDS = ("method", "dataset", "split", "metric", "variant", "k", "value", "unit")
REID_PLOT, DETECTION_PLOT = "reid_vs_k.png", "detection_vs_recall.png"
DEFAULT_OUT = Path("outputs/report")
_DASH = "–"

# Detector / embedder preference when a table or plot has to pick one.
DEEP_DETECTORS = ("ssh", "dlib_cnn", "mtcnn", "mediapipe")
FACENETS = ("facenet_casia", "facenet_vggface2")
EMBEDDER_ORDER = (*FACENETS, "pnca", "dlib")

# ---------------------------------------------------------------------------------------------
# Loading


def _read_results(path: Path) -> dict[str, Any]:
    """One results.json, checked just enough that the tables can trust its shape."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BadInputError(path, f"not valid JSON ({err.msg}, line {err.lineno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BadInputError(path, f"cannot read results ({err})") from None
    if not isinstance(data, dict):
        raise BadInputError(path, "not a results file (top level is not a JSON object)")
    if not isinstance(data.get("method"), str) or not data["method"]:
        raise BadInputError(path, "not a results file (no 'method' name)")
    for key in ("metrics", "dataset"):
        if not isinstance(data.get(key, {}), dict):
            raise BadInputError(path, f"not a results file ('{key}' is not an object)")
    for name, section in data.get("metrics", {}).items():
        if not isinstance(section, dict):
            raise BadInputError(path, f"not a results file (metrics.{name} is not an object)")
    data["_source"] = str(path)
    return data


def _find_results(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BadInputError(path, "no such file or folder")
    found = sorted(p for p in path.rglob(RESULTS_FILE) if p.is_file())
    if not found:
        raise BadInputError(path, f"no {RESULTS_FILE} found in this folder or below it")
    return found


def load_results(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Read every results.json named by `paths` (run folders, files, or sweep folders).

    Each dict gets `_source` (the file it came from). A path without results or a malformed
    file raises `BadInputError` naming the file.
    """
    files: list[Path] = []
    for raw in paths:
        for file in _find_results(Path(raw)):
            if file.resolve() not in {f.resolve() for f in files}:
                files.append(file)
    if not files:
        raise DeidError("no results given: name at least one run folder or results.json")
    return [_read_results(file) for file in files]


# ---------------------------------------------------------------------------------------------
# Long-format rows

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


def _section_values(name: str, section: dict[str, Any]) -> Iterable[tuple[Key, float, str]]:
    if name in _FIELDS or name == "reid":
        for variant, entry in section.items():
            if not isinstance(entry, dict):
                continue
            if name == "reid":
                yield from _reid_values(variant, entry)
                continue
            for key, raw in entry.items():
                if (v := _number(raw)) is not None:
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
class _Run:
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


def _runs(results_list: Sequence[dict[str, Any]]) -> list[_Run]:
    runs = [
        _Run(r, str(r.get("method_label") or r["method"]), _values(r))
        for r in sorted(results_list, key=lambda r: paper.method_rank(r["method"]))
    ]
    labels = [(r.label, _group_name(r)) for r in runs]
    for run in runs:
        if labels.count((run.label, _group_name(run))) > 1:
            where = Path(run.result.get("_source", "")).parent.name or str(runs.index(run))
            run.label = f"{run.label} [{where}]"
    return runs


def _values(results: dict[str, Any]) -> dict[Key, float]:
    return {(r["metric"], r["variant"], r["k"]): r["value"] for r in result_rows(results)}


def _group_name(run: _Run) -> str:
    name, split = run.dataset.get("name", "?"), run.dataset.get("split")
    return f"{name} ({split})" if split else str(name)


def _groups(runs: list[_Run]) -> list[tuple[str, list[_Run]]]:
    """Runs by (dataset, split), in order of first appearance; each group gets its tables."""
    groups: dict[str, list[_Run]] = {}
    for run in runs:
        groups.setdefault(_group_name(run), []).append(run)
    return list(groups.items())


# ---------------------------------------------------------------------------------------------
# Markdown


def _pct(value: float | None) -> str:
    return _DASH if value is None else f"{100 * value:.1f}"


def _cell(ours: str, paper_value: str | None) -> str:
    return ours if paper_value is None else f"{ours} (paper {paper_value})"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pick(present: set[str], preferred: Sequence[str], runs: list[_Run], metric: str) -> str | None:
    """The preferred variant present, else the one most runs have (ties by name)."""
    for name in preferred:
        if name in present:
            return name
    if not present:
        return None
    return max(sorted(present), key=lambda v: sum(v in r.variants(metric) for r in runs))


def _joined(values: Iterable[Any]) -> str:
    unique = sorted({f"{v:g}" if isinstance(v, float) else str(v) for v in values})
    return "/".join(unique) if unique else "?"


def _dataset_line(runs: list[_Run]) -> str:
    images = _joined(r.dataset["images"] for r in runs if "images" in r.dataset)
    identities = [r.dataset["identities"] for r in runs if "identities" in r.dataset]
    line = f"Dataset {_group_name(runs[0])}: {images} images"
    return line + (f", {_joined(identities)} identities" if identities else "")


def _table2(runs: list[_Run]) -> str | None:
    """CIAGAN Table 2: detection rate and Recall@1 for every method."""
    detectors = set().union(*(r.variants("detection_rate") for r in runs))
    embedders = set().union(*(r.variants("reid_recall") for r in runs))
    if not detectors and not embedders:
        return None
    deep = _pick(detectors & set(DEEP_DETECTORS), DEEP_DETECTORS, runs, "detection_rate")
    facenet = _pick(embedders & set(FACENETS), FACENETS, runs, "reid_recall")
    det_cols = [d for d in ("dlib_hog", deep) if d in detectors]
    det_cols += sorted(detectors - set(det_cols))
    emb_cols = [e for e in ("pnca", facenet) if e in embedders]
    emb_cols += sorted(embedders - set(emb_cols))
    paper_key = {"dlib_hog": "dlib", deep: "ssh", "pnca": "pnca", facenet: "facenet"}

    header = ["method"] + [f"detection {d} %" for d in det_cols]
    header += [f"Recall@1 {e} %" for e in emb_cols]
    rows = []
    for run in runs:
        cells = [run.get("detection_rate", d) for d in det_cols]
        cells += [run.get("reid_recall", e, 1) for e in emb_cols]
        if all(c is None for c in cells):
            continue
        ref = paper.CIAGAN_TABLE2.get(run.method, {})
        row = [run.label]
        for variant, value in zip(det_cols + emb_cols, cells, strict=True):
            number = ref.get(paper_key.get(variant, ""))
            row.append(_cell(_pct(value), None if number is None else f"{number:.1f}"))
        rows.append(row)

    notes = [_dataset_line(runs)]
    for d in det_cols:
        thr = [t for r in runs if (t := r.get("detection_threshold", d)) is not None]
        evaluated = [int(e) for r in runs if (e := r.get("detection_evaluated", d)) is not None]
        note = d + (f" at threshold {_joined(thr)}" if thr else "")
        note += f" on {_joined(evaluated)} evaluated images" if evaluated else ""
        note += {"dlib_hog": " (paper: dlib)", deep: " (deep detector; paper used SSH)"}.get(d, "")
        notes.append(note)
    if facenet:
        notes.append(f"FaceNet = {facenet}")
    if "pnca" in emb_cols:
        notes.append("PNCA = our Proxy-NCA identity network")
    chance = [r.get("reid_chance", e) for r in runs for e in emb_cols]
    if any(c is not None for c in chance):
        notes.append(f"Recall@1 chance = {_joined(_pct(c) for c in chance if c is not None)} %")
    caption = "Detection rate (higher = more usable) and re-identification Recall@1 (lower = "
    caption += "better privacy), % of images; paper: CIAGAN Table 2 on CelebA."
    return _section("CIAGAN Table 2: detection and identification", header, rows, caption, notes)


def _section(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    caption: str,
    notes: Sequence[str],
    footnote: str | None = None,
) -> str | None:
    """A titled table with its caption above and what was really used below; None if empty."""
    if not rows:
        return None
    text = f"### {title}\n\n{caption}\n\n{_md_table(header, rows)}\n\n" + "; ".join(notes) + "."
    return text + (f"\n\n{footnote}" if footnote else "")


def _table1(runs: list[_Run]) -> str | None:
    """CIAGAN Table 1: the CIAGAN variants' detection, Recall@1 and FID."""
    family = [r for r in runs if r.method in paper.CIAGAN_TABLE1 or r.method.startswith("ciagan")]
    if not family:
        return None
    detectors = set().union(*(r.variants("detection_rate") for r in family))
    embedders = set().union(*(r.variants("reid_recall") for r in family))
    det = _pick(detectors, ("dlib_hog", *DEEP_DETECTORS), family, "detection_rate")
    emb = _pick(embedders, ("pnca", *EMBEDDER_ORDER), family, "reid_recall")
    rows = []
    for run in family:
        ours = (
            run.get("detection_rate", det or ""),
            run.get("reid_recall", emb or "", 1),
            run.get("fid"),
        )
        if all(v is None for v in ours):
            continue
        ref = paper.CIAGAN_TABLE1.get(run.method, {})
        fid = _DASH if ours[2] is None else f"{ours[2]:.1f}"
        rows.append(
            [
                run.label,
                _cell(_pct(ours[0]), _opt(ref.get("detection"), ".1f")),
                _cell(_pct(ours[1]), _opt(ref.get("recall@1"), ".1f")),
                _cell(fid, _opt(ref.get("fid"), ".1f")),
            ]
        )
    notes = [
        _dataset_line(family),
        f"detection = {det or 'none run'}, Recall@1 = {emb or 'none run'}; the paper names "
        "neither, but its full model's 99.9 / 1.3 equal Table 2's dlib and PNCA columns",
    ]
    caption = "Ablation of the CIAGAN variants, %; paper: CIAGAN Table 1 on CelebA."
    header = ["model", "detection %", "Recall@1 %", "FID"]
    return _section("CIAGAN Table 1: ablation", header, rows, caption, notes)


def _opt(value: float | None, spec: str) -> str | None:
    return None if value is None else format(value, spec)


def _table3(runs: list[_Run]) -> str | None:
    """CIAGAN Table 3: LFW TAR at FAR = 0.001, mean ± std over the ten folds."""
    columns = [("facenet_vggface2", "vggface2"), ("facenet_casia", "casia")]
    present = set().union(*(r.variants("lfw_tar") for r in runs))
    columns += [(v, "") for v in sorted(present - {c for c, _ in columns})]
    columns = [c for c in columns if c[0] in present]
    if not columns:
        return None
    rows, misses = [], []
    for run in runs:
        if not run.variants("lfw_tar"):
            continue
        ref = paper.CIAGAN_TABLE3.get(run.method, {})
        row = [run.label]
        for variant, key in columns:
            mean, std = run.get("lfw_tar", variant), run.get("lfw_tar_std", variant)
            ours = _DASH if mean is None else f"{mean:.3f} ± {std or 0.0:.3f}"
            known = ref.get(key)
            row.append(_cell(ours, None if known is None else f"{known[0]:.3f} ± {known[1]:.3f}"))
            miss = run.get("lfw_anonymized_face_misses", variant)
            if miss is not None and f"{run.label} {int(miss)}" not in misses:
                misses.append(f"{run.label} {int(miss)}")
        rows.append(row)
    header = ["method"] + [f"TAR@FAR=0.001 {v}" for v, _ in columns]
    caption = "LFW verification, TAR at FAR = 0.001 over 10 folds (mean ± std, as a fraction "
    caption += "like the paper; lower = better privacy); paper: CIAGAN Table 3."
    notes = [_dataset_line([r for r in runs if r.variants("lfw_tar")])]
    notes.append("embedders " + ", ".join(v for v, _ in columns) + " (FaceNet, MTCNN crops)")
    if misses:
        notes.append("anonymized faces MTCNN missed (original box reused): " + ", ".join(misses))
    return _section("CIAGAN Table 3: LFW TAR@FAR", header, rows, caption, notes)


def _fid_table(runs: list[_Run]) -> str | None:
    """CIAGAN supplement Table 4 as one FID row (methods as columns), with KID beside it."""
    scored = [r for r in runs if r.get("fid") is not None or r.get("kid_mean") is not None]
    if not scored:
        return None
    header = [""] + [r.label for r in scored]
    rows = [["FID (ours)"] + [_opt(r.get("fid"), ".2f") or _DASH for r in scored]]
    rows.append(
        ["FID (paper)"]
        + [_opt(paper.CIAGAN_TABLE4_FID.get(r.method), ".2f") or _DASH for r in scored]
    )
    if any(r.get("kid_mean") is not None for r in scored):
        rows.append(["KID x 1000 (ours)"] + [_kid(r) for r in scored])
    notes = [_dataset_line(scored)]
    samples = [r.get("fid_samples") for r in scored]
    if any(s is not None for s in samples):
        notes.append(f"FID over {_joined(int(s) for s in samples if s is not None)} samples")
    impls = {
        str(r.result["metrics"]["fid"].get("implementation"))
        for r in scored
        if "fid" in r.result["metrics"]
    }
    notes += sorted(i for i in impls if i != "None")
    sizes = [r.get("kid_subset_size") for r in scored]
    subsets = [r.get("kid_subsets") for r in scored]
    if any(s is not None for s in sizes):
        notes.append(
            f"KID over {_joined(int(s) for s in subsets if s is not None)} subsets of "
            f"{_joined(int(s) for s in sizes if s is not None)}"
        )
    notes.append("FID is biased by the sample count; the paper's came from the CelebA test set")
    caption = "Image quality, lower = closer to the originals; paper: CIAGAN supplement Table 4."
    return _section("CIAGAN supplement Table 4: FID", header, rows, caption, notes)


def _kid(run: _Run) -> str:
    mean, std = run.get("kid_mean"), run.get("kid_std")
    if mean is None:
        return _DASH
    return f"{1000 * mean:.2f}" + ("" if std is None else f" ± {1000 * std:.2f}")


def _vqgan_table(runs: list[_Run]) -> str | None:
    """VQGAN Table I: silhouette k-NN re-identification for k = 1..10, paper row under ours."""
    scored = [r for r in runs if r.variants("silhouette_reid")]
    if not scored:
        return None
    ks = sorted(
        {
            k
            for r in scored
            for v in r.variants("silhouette_reid")
            for k in r.ks("silhouette_reid", v)
        }
    )
    rows, blurred = [], []
    for run in scored:
        backbone = sorted(run.variants("silhouette_reid"))[0]
        rows.append([run.label] + [_pct(run.get("silhouette_reid", backbone, k)) for k in ks])
        ref = paper.vqgan_table1_row(run.method)
        if ref is not None:
            mark = "¹" if run.method in paper.BLUR_METHODS else ""
            if mark:
                blurred.append(run.method)
            cells = [f"{ref[k - 1]:.1f}" if k <= len(ref) else _DASH for k in ks]
            rows.append([f"↳ paper{mark}"] + cells)
    backbones = _joined(v for r in scored for v in r.variants("silhouette_reid"))
    notes = [
        _dataset_line(scored),
        f"backbone = {backbones} (paper: ImageNet ResNet-50), features on the person silhouette",
    ]
    footnote = None
    if blurred:
        footnote = "¹ The paper's 'face blurring' row states no kernel size; it is shown beside "
        footnote += ", ".join(blurred) + "."
    caption = "% of de-identified persons whose original is among the k nearest neighbours "
    caption += (
        "(lower = better privacy); paper: VQGAN Table I on Supervisely Persons (2,667 images)."
    )
    header = ["method"] + [f"k={k}" for k in ks]
    title = "VQGAN Table I: silhouette k-NN re-identification"
    return _section(title, header, rows, caption, notes, footnote)


TABLES: tuple[Callable[[list[_Run]], str | None], ...] = (
    _table2,
    _table1,
    _table3,
    _fid_table,
    _vqgan_table,
)


def render_tables(results_list: Sequence[dict[str, Any]]) -> str:
    """The Markdown report: per dataset, each paper table that has data (ours, paper beside)."""
    parts = ["# De-identification report"]
    groups = _groups(_runs(results_list))
    for name, runs in groups:
        tables = [t for t in (table(runs) for table in TABLES) if t]
        if len(groups) > 1:
            parts.append(f"## {name}")
        parts += tables or [f"No table has data for {name}."]
    sources = [r.get("_source") for r in results_list if r.get("_source")]
    if sources:
        parts.append("Runs: " + ", ".join(f"`{s}`" for s in sources))
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# Plots


def _figure(width: float, height: float) -> Any:
    """A Figure with an Agg canvas: no pyplot, so no global backend or figure registry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _labeller(runs: list[_Run]) -> Callable[[_Run], str]:
    """Run labels, with the dataset added when the plotted runs come from several."""
    several = len(_groups(runs)) > 1
    return lambda r: f"{r.label} ({r.dataset.get('name', '?')})" if several else r.label


def _colours(runs: list[_Run]) -> dict[int, str]:
    """One colour per run, the same in every panel."""
    return {id(run): f"C{i % 10}" for i, run in enumerate(runs)}


def plot_reid_vs_k(results_list: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Re-identification vs k: a panel per source with several ks, a line per method.

    Sources: silhouette k-NN (per backbone, VQGAN Table I's paper rows dashed) and Recall@k
    (per embedder). Returns None, writing nothing, when no run has more than one k.
    """
    from matplotlib.ticker import MaxNLocator

    runs = _runs(results_list)
    panels = []
    for metric, title in (("silhouette_reid", "silhouette k-NN"), ("reid_recall", "Recall@k")):
        for variant in sorted(set().union(*(r.variants(metric) for r in runs))):
            lines = [(r, r.ks(metric, variant)) for r in runs if len(r.ks(metric, variant)) > 1]
            if lines:
                panels.append((f"{title} ({variant})", metric, variant, lines))
    if not panels:
        return None
    label = _labeller([r for *_, lines in panels for r, _ in lines])
    colour = _colours(runs)
    fig = _figure(5.0 * len(panels), 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, metric, variant, lines) in zip(axes, panels, strict=True):
        for run, ks in lines:
            ys = [100 * run.get(metric, variant, k) for k in ks]
            ax.plot(ks, ys, marker="o", color=colour[id(run)], label=label(run))
            ref = paper.vqgan_table1_row(run.method) if metric == "silhouette_reid" else None
            if ref is not None:
                ax.plot(
                    range(1, len(ref) + 1),
                    ref,
                    linestyle="--",
                    color=colour[id(run)],
                    alpha=0.6,
                    label=f"{label(run)}, paper",
                )
        ax.set(title=title, xlabel="k", ylabel="re-identified %", ylim=(-2, 102))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Re-identification vs k (lower = better privacy; dashed = paper)")
    return _save(fig, path)


def _best_pair(runs: list[_Run]) -> tuple[str, str] | None:
    """The detector/embedder pair most runs have both of (preferring the paper's ones)."""
    det_rank = ("dlib_hog", *DEEP_DETECTORS)
    best: tuple[tuple[int, int, int], tuple[str, str]] | None = None
    for det in set().union(*(r.variants("detection_rate") for r in runs)):
        for emb in set().union(*(r.variants("reid_recall") for r in runs)):
            count = sum(_point(r, det, emb) is not None for r in runs)
            score = (
                count,
                -(det_rank.index(det) if det in det_rank else len(det_rank)),
                -(EMBEDDER_ORDER.index(emb) if emb in EMBEDDER_ORDER else len(EMBEDDER_ORDER)),
            )
            if count and (best is None or score > best[0]):
                best = (score, (det, emb))
    return None if best is None else best[1]


def _point(run: _Run, detector: str, embedder: str) -> tuple[float, float] | None:
    """(detection %, Recall@1 %) of a run, or None if it lacks either."""
    det, rec = run.get("detection_rate", detector), run.get("reid_recall", embedder, 1)
    return None if det is None or rec is None else (100 * det, 100 * rec)


def _paper_point(method: str, detector: str, embedder: str) -> tuple[float, float] | None:
    """The CIAGAN Table 2 point comparable to (detector, embedder), if there is one."""
    det_key = {"dlib_hog": "dlib", "ssh": "ssh"}.get(detector)
    emb_key = "pnca" if embedder == "pnca" else "facenet" if embedder in FACENETS else None
    row = paper.CIAGAN_TABLE2.get(method)
    if row is None or det_key is None or emb_key is None:
        return None
    return row[det_key], row[emb_key]


def plot_detection_vs_recall(results_list: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Detection rate vs Recall@1, a labelled point per method, CIAGAN Table 2 hollow beside.

    The detector/embedder pair is the one most runs have (dlib_hog and FaceNet preferred);
    the title names it. Returns None, writing nothing, when no run has both numbers.
    """
    runs = _runs(results_list)
    pair = _best_pair(runs)
    if pair is None:
        return None
    det, emb = pair
    points = [(r, p) for r in runs if (p := _point(r, det, emb)) is not None]
    label = _labeller([r for r, _ in points])
    colour = _colours(runs)
    fig = _figure(6.5, 5.5)
    ax = fig.subplots()
    paper_drawn = False
    for run, (x, y) in points:
        ax.scatter([x], [y], color=colour[id(run)], zorder=3)
        ax.annotate(label(run), (x, y), textcoords="offset points", xytext=(5, 5))
        ref = _paper_point(run.method, det, emb)
        if ref is not None:
            ax.scatter(*ref, facecolors="none", edgecolors=colour[id(run)], zorder=3)
            ax.plot([x, ref[0]], [y, ref[1]], linestyle=":", color=colour[id(run)], alpha=0.6)
            paper_drawn = True
    datasets = ", ".join(name for name, _ in _groups([r for r, _ in points]))
    title = f"Detection ({det}) vs Recall@1 ({emb}) on {datasets}"
    if paper_drawn:
        title += "\nhollow = CIAGAN Table 2 (dlib/SSH, PNCA/FaceNet)"
    ax.set(
        xlabel=f"detection rate % ({det}); right = still usable",
        ylabel=f"Recall@1 % ({emb}); low = private",
        xlim=(-5, 110),
        ylim=(-5, 105),
        title=title,
    )
    ax.grid(alpha=0.3)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Writing


def _write_csv(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    with atomic_write(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "k": "" if row["k"] is None else row["k"]})
    return path


def _write_outputs(results_list: Sequence[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    for results in results_list:
        if not isinstance(results.get("method"), str):
            where = results.get("_source", "a results dict")
            raise DeidError(f"{where}: not a results file (no 'method' name)")
    out_dir = Path(out_dir)
    rows = [row for r in results_list for row in result_rows(r)]
    written = {"results.csv": _write_csv(out_dir / "results.csv", rows)}
    with atomic_write(out_dir / "tables.md") as handle:
        handle.write(render_tables(results_list))
    written["tables.md"] = out_dir / "tables.md"
    for name, plot in ((REID_PLOT, plot_reid_vs_k), (DETECTION_PLOT, plot_detection_vs_recall)):
        if plot(results_list, out_dir / name) is not None:
            written[name] = out_dir / name
        else:  # no data for it: a plot left by an earlier report would now be wrong
            (out_dir / name).unlink(missing_ok=True)
    return written


def write_run_outputs(run_dir: str | os.PathLike[str], results: dict[str, Any]) -> dict[str, Path]:
    """One run's results.csv, tables.md and plots (those with data), beside its results.json."""
    return _write_outputs([results], Path(run_dir))


def write_report(
    results_list: Sequence[dict[str, Any]], out_dir: str | os.PathLike[str]
) -> dict[str, Path]:
    """Merged results.csv, tables.md, plots and summary.json for many runs in `out_dir`."""
    if not results_list:
        raise DeidError("no results to report")
    out_dir = Path(out_dir)
    written = _write_outputs(results_list, out_dir)
    summary = {
        "runs": [
            {
                "method": r["method"],
                "method_label": r.get("method_label"),
                "dataset": r.get("dataset", {}),
                "source": r.get("_source"),
            }
            for r in results_list
        ],
        "rows": [row for r in results_list for row in result_rows(r)],
        "files": sorted(written),
    }
    with atomic_write(out_dir / "summary.json") as handle:
        json.dump(summary, handle, indent=2)
    written["summary.json"] = out_dir / "summary.json"
    return written


def default_out_dir(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """The inputs' common folder (a results.json counts as its folder), else outputs/report."""
    folders = [Path(p).resolve() for p in paths]
    folders = [p.parent if p.is_file() else p for p in folders]
    try:
        common = Path(os.path.commonpath(folders))
    except ValueError:  # different drives, or nothing given
        return DEFAULT_OUT
    return DEFAULT_OUT if common == Path(common.anchor) else common


# ---------------------------------------------------------------------------------------------
# Hydra callback and CLI


class MergeReportCallback(Callback):
    """Hydra callback: after `evaluate.py -m ...`, one merged report in the sweep folder.

    Enable with `hydra.callbacks.merge_report._target_: deid_eval.report.MergeReportCallback`.
    It never fails the sweep: problems are logged.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            written = write_report(load_results([sweep_dir]), sweep_dir)
            log.info("merged report: %s", written["tables.md"])
        except DeidError as err:
            log.warning("merged report not written: %s", err)
        except Exception:
            log.exception("merged report failed (the sweep's own results are unaffected)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deid_eval.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("runs", nargs="+", help="run folders, results.json files or sweep folders")
    parser.add_argument(
        "-o", "--out", type=Path, help="output folder (default: the inputs' common folder)"
    )
    args = parser.parse_args(argv)
    results_list = load_results(args.runs)
    out_dir = args.out or default_out_dir(args.runs)
    written = write_report(results_list, out_dir)
    print(written["tables.md"].read_text(encoding="utf-8"))
    print(f"report of {len(results_list)} run(s) in {out_dir}: " + ", ".join(sorted(written)))
    return 0


if __name__ == "__main__":
    from deid.cli_utils import run_cli

    sys.exit(run_cli(lambda: main()))
