"""``python -m meseta.agent``: same as ``meseta agent``."""

from meseta.cli import app

app(["agent"])
