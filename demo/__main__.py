"""`python -m demo`: the end-to-end demo (see `demo.main`)."""

import sys

from deid.cli_utils import run_cli
from demo.main import main

sys.exit(run_cli(lambda: main()))
