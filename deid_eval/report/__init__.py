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

One job a module: `loading` (finding and reading results.json), `rows` (long-format rows and
the per-run view the tables and plots share), `tables` (Markdown), `plots` (PNG figures),
`outputs` (writing a report, the Hydra callback), `cli` (`python -m deid_eval.report`).
"""

from deid_eval.report.cli import main
from deid_eval.report.loading import DEFAULT_OUT, RESULTS_FILE, default_out_dir, load_results
from deid_eval.report.outputs import (
    DETECTION_PLOT,
    REID_PLOT,
    MergeReportCallback,
    write_report,
    write_run_outputs,
)
from deid_eval.report.plots import plot_detection_vs_recall, plot_reid_vs_k
from deid_eval.report.rows import CSV_FIELDS, Key, result_rows
from deid_eval.report.tables import (
    DEEP_DETECTORS,
    EMBEDDER_ORDER,
    FACENETS,
    TABLES,
    render_tables,
)

__all__ = [
    "CSV_FIELDS",
    "DEEP_DETECTORS",
    "DEFAULT_OUT",
    "DETECTION_PLOT",
    "EMBEDDER_ORDER",
    "FACENETS",
    "REID_PLOT",
    "RESULTS_FILE",
    "TABLES",
    "Key",
    "MergeReportCallback",
    "default_out_dir",
    "load_results",
    "main",
    "plot_detection_vs_recall",
    "plot_reid_vs_k",
    "render_tables",
    "result_rows",
    "write_report",
    "write_run_outputs",
]
