"""Code blocks of the docs, as printed: the tests run them, so the docs cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def code_blocks(doc: Path, language: str) -> list[str]:
    """Every fenced block of ``language`` in ``doc``, in order, exactly as written."""
    return re.findall(rf"^```{language}\n(.*?)^```", doc.read_text(), re.S | re.M)
