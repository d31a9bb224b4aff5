"""``python -m meseta.allocator``: same as ``meseta allocator``."""

from meseta.cli import app

app(["allocator"])
