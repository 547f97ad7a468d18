"""Merge evaluation runs into one CSV, paper-style Markdown tables and two plots.

    python -m deid_eval.report RUN_DIR_OR_RESULTS_JSON... [-o OUT_DIR]

Without `-o` the report goes to the inputs' common folder (see `default_out_dir`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deid_eval.report.loading import default_out_dir, load_results
from deid_eval.report.outputs import write_report


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
