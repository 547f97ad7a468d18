"""Paper-style Markdown tables: ours, with the paper's numbers beside them (`render_tables`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from deid_eval import paper_numbers as paper
from deid_eval.report.rows import ReportRun, group_name, group_runs, report_runs

_DASH = "–"

# Detector / embedder preference when a table or plot has to pick one.
DEEP_DETECTORS = ("ssh", "dlib_cnn", "mtcnn", "mediapipe")
FACENETS = ("facenet_casia", "facenet_vggface2")
EMBEDDER_ORDER = (*FACENETS, "pnca", "dlib")


def _pct(value: float | None) -> str:
    return _DASH if value is None else f"{100 * value:.1f}"


def _cell(ours: str, paper_value: str | None) -> str:
    return ours if paper_value is None else f"{ours} (paper {paper_value})"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pick(
    present: set[str], preferred: Sequence[str], runs: list[ReportRun], metric: str
) -> str | None:
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


def _dataset_line(runs: list[ReportRun]) -> str:
    images = _joined(r.dataset["images"] for r in runs if "images" in r.dataset)
    identities = [r.dataset["identities"] for r in runs if "identities" in r.dataset]
    line = f"Dataset {group_name(runs[0])}: {images} images"
    return line + (f", {_joined(identities)} identities" if identities else "")


def _table2(runs: list[ReportRun]) -> str | None:
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


def _table1(runs: list[ReportRun]) -> str | None:
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


def _table3(runs: list[ReportRun]) -> str | None:
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


def _fid_table(runs: list[ReportRun]) -> str | None:
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


def _kid(run: ReportRun) -> str:
    mean, std = run.get("kid_mean"), run.get("kid_std")
    if mean is None:
        return _DASH
    return f"{1000 * mean:.2f}" + ("" if std is None else f" ± {1000 * std:.2f}")


def _vqgan_table(runs: list[ReportRun]) -> str | None:
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
    persons = [r.dataset["persons"] for r in scored if "persons" in r.dataset]
    notes = [
        _dataset_line(scored) + (f", {_joined(persons)} persons" if persons else ""),
        f"backbone = {backbones} (paper: ImageNet ResNet-50), features on the person silhouette",
    ]
    sections = {id(r): (r.result.get("metrics") or {}).get("silhouette_knn") or {} for r in scored}
    if any(section.get("fallback_used") for section in sections.values()):
        notes.append(
            "fid_inception is the offline fallback: the ResNet-50 weights were missing "
            "(`python -m deid.weights list`), so these numbers are not comparable with the paper's"
        )
    for run in scored:
        counts = sections[id(run)].get("anonymizer_counts") or {}
        if counts.get("fallbacks"):
            notes.append(
                f"{run.label}: {counts['fallbacks']} of {counts.get('persons', '?')} persons fell "
                "back (not synthesized)"
            )
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


TABLES: tuple[Callable[[list[ReportRun]], str | None], ...] = (
    _table2,
    _table1,
    _table3,
    _fid_table,
    _vqgan_table,
)


def render_tables(results_list: Sequence[dict[str, Any]]) -> str:
    """The Markdown report: per dataset, each paper table that has data (ours, paper beside)."""
    parts = ["# De-identification report"]
    groups = group_runs(report_runs(results_list))
    for name, runs in groups:
        tables = [t for t in (table(runs) for table in TABLES) if t]
        if len(groups) > 1:
            parts.append(f"## {name}")
        parts += tables or [f"No table has data for {name}."]
    sources = [r.get("_source") for r in results_list if r.get("_source")]
    if sources:
        parts.append("Runs: " + ", ".join(f"`{s}`" for s in sources))
    return "\n\n".join(parts) + "\n"
