"""``python -m meseta.master``: same as ``meseta master``."""

from meseta.cli import app

app(["master"])
