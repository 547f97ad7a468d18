"""`python -m deid_eval.report RUN_DIR... [-o OUT_DIR]`: see `deid_eval.report.cli`."""

import sys

from deid.cli_utils import run_cli
from deid_eval.report.cli import main

if __name__ == "__main__":
    sys.exit(run_cli(lambda: main()))
