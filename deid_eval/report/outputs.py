"""Write a report (CSV, Markdown, plots, summary) for one run or many; the Hydra callback."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from deid.errors import DeidError
from deid.media import atomic_write
from deid_eval.report.loading import load_results
from deid_eval.report.plots import plot_detection_vs_recall, plot_reid_vs_k
from deid_eval.report.rows import CSV_FIELDS, result_rows
from deid_eval.report.tables import render_tables

log = logging.getLogger(__name__)

REID_PLOT, DETECTION_PLOT = "reid_vs_k.png", "detection_vs_recall.png"


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
