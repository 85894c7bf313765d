"""`python -m ponder …` runs the command-line interface."""

from ponder.cli import app

app(prog_name="ponder")
