"""The reference pages name what the code has: a field or message added to the code and not to the page
fails here."""

from __future__ import annotations

import re

from meseta.master import views
from tests.snippets import ROOT

OPERATIONS = ROOT / "docs" / "OPERATIONS.md"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end >= 0 else None]


def test_every_state_api_field_is_documented() -> None:
    section = _section(OPERATIONS.read_text(), "### The JSON documents")
    named = set(re.findall(r"`([a-z_]+)`", section))
    models = views._View.__subclasses__()  # every document's model, and the parts they are made of
    assert len(models) >= 9
    missing = {f"{m.__name__}.{f}" for m in models for f in m.model_fields if f not in named}
    assert not missing, f"fields the state API serves and docs/OPERATIONS.md does not name: {missing}"
