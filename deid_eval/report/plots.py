"""The report's two figures: re-identification vs k, and detection rate vs Recall@1."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deid.media import atomic_path
from deid_eval import paper_numbers as paper
from deid_eval.report.rows import ReportRun, group_name, group_runs, report_runs
from deid_eval.report.tables import DEEP_DETECTORS, EMBEDDER_ORDER, FACENETS


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


def _labeller(runs: list[ReportRun]) -> Callable[[ReportRun], str]:
    """Run labels, with the dataset group (name, split, crops) added when there are several."""
    several = len(group_runs(runs)) > 1
    return lambda r: f"{r.label} ({group_name(r)})" if several else r.label


def _colours(runs: list[ReportRun]) -> dict[int, str]:
    """One colour per method, the same in every panel and dataset group."""
    methods = list(dict.fromkeys(run.method for run in runs))
    return {id(run): f"C{methods.index(run.method) % 10}" for run in runs}


def _markers(runs: list[ReportRun]) -> dict[int, str]:
    """One marker per dataset group, so two groups of the same methods stay apart."""
    groups = [name for name, _ in group_runs(runs)]
    shapes = "os^Dv"
    return {id(run): shapes[groups.index(group_name(run)) % len(shapes)] for run in runs}


def plot_reid_vs_k(results_list: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Re-identification vs k: a panel per source with several ks, a line per method.

    Sources: silhouette k-NN (per backbone, VQGAN Table I's paper rows dashed) and Recall@k
    (per embedder). Returns None, writing nothing, when no run has more than one k.
    """
    from matplotlib.ticker import MaxNLocator

    runs = report_runs(results_list)
    panels = []
    for metric, title in (("silhouette_reid", "silhouette k-NN"), ("reid_recall", "Recall@k")):
        for variant in sorted(set().union(*(r.variants(metric) for r in runs))):
            lines = [(r, r.ks(metric, variant)) for r in runs if len(r.ks(metric, variant)) > 1]
            if lines:
                panels.append((f"{title} ({variant})", metric, variant, lines))
    if not panels:
        return None
    label = _labeller([r for *_, lines in panels for r, _ in lines])
    colour, marker = _colours(runs), _markers(runs)
    fig = _figure(5.0 * len(panels), 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, metric, variant, lines) in zip(axes, panels, strict=True):
        for run, ks in lines:
            ys = [100 * run.get(metric, variant, k) for k in ks]
            ax.plot(ks, ys, marker=marker[id(run)], color=colour[id(run)], label=label(run))
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


def _best_pair(runs: list[ReportRun]) -> tuple[str, str] | None:
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


def _point(run: ReportRun, detector: str, embedder: str) -> tuple[float, float] | None:
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
    runs = report_runs(results_list)
    pair = _best_pair(runs)
    if pair is None:
        return None
    det, emb = pair
    points = [(r, p) for r in runs if (p := _point(r, det, emb)) is not None]
    label = _labeller([r for r, _ in points])
    colour, marker = _colours(runs), _markers(runs)
    fig = _figure(6.5, 5.5)
    ax = fig.subplots()
    paper_drawn = False
    for run, (x, y) in points:
        ax.scatter([x], [y], color=colour[id(run)], marker=marker[id(run)], zorder=3)
        ax.annotate(label(run), (x, y), textcoords="offset points", xytext=(5, 5))
        ref = _paper_point(run.method, det, emb)
        if ref is not None:
            ax.scatter(*ref, facecolors="none", edgecolors=colour[id(run)], zorder=3)
            ax.plot([x, ref[0]], [y, ref[1]], linestyle=":", color=colour[id(run)], alpha=0.6)
            paper_drawn = True
    datasets = ", ".join(name for name, _ in group_runs([r for r, _ in points]))
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
