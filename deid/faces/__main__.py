"""`python -m deid.faces ...`; see `deid.faces.cli`."""

import sys

from deid.cli_utils import run_cli
from deid.faces.cli import main

sys.exit(run_cli(lambda: main()))
