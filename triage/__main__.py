"""`python -m triage` is the `triage` command."""

from triage.cli import app

app(prog_name="triage")
