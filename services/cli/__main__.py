"""``python -m meseta.cli``: the ``meseta`` command."""

from meseta.cli import app

app()
