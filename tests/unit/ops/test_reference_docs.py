"""The reference pages name what the code has: a field or message added to the code and not to the page
fails here."""

from __future__ import annotations

import re

from meseta.master import views
from meseta.sdk import wire
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


WIRE = ROOT / "docs" / "WIRE.md"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def test_the_wire_page_names_every_message_and_name_of_the_contract() -> None:
    text = WIRE.read_text()
    named = set(re.findall(r"`([^`]+)`", text))
    types = {t for channel in wire.CHANNELS for t in channel.types}
    missing = {f"message {t}" for t in types if t not in named}
    for enum in (wire.Exchange, wire.RoutingKey, wire.Queue):
        missing |= {f"{enum.__name__} {v.value}" for v in enum if v.value not in named}
    for header in (wire.HEADER_EPOCH, wire.HEADER_ORIGIN, wire.HEADER_REASON, "traceparent"):
        missing |= {f"header {header}"} if header not in named else set()
    assert not missing, f"in the code, not in docs/WIRE.md: {sorted(missing)}"
    assert f"(protocol {wire.PROTOCOL_VERSION})" in text
    assert f"{wire.MAX_MESSAGE_BYTES} bytes" in text and f"{wire.MAX_BATCH} items" in text
    for model in (
        wire.Offer,
        wire.TaskStatus,
        wire.Acknowledged,
        wire.Grant,
        wire.Recovered,
        wire.StatusUpdate,
    ):
        assert not {f for f in model.model_fields if f"`{f}`" not in text}, model.__name__


def _map() -> dict[str, set[str]]:
    """Folder -> the modules the module map lists for it."""
    sections = re.split(r"^### `([^`]+)/`", ARCHITECTURE.read_text(), flags=re.M)
    return {
        folder: set(re.findall(r"^\| `([a-z_]+\.py)` \|", body, flags=re.M))
        for folder, body in zip(sections[1::2], sections[2::2], strict=True)
    }


def test_the_module_map_matches_the_code() -> None:
    listed = _map()
    folders = [p.parent for p in (ROOT / "services").glob("*/__init__.py")]
    folders += [ROOT / "sdk", ROOT / "sdk" / "wire", ROOT / "examples"]
    for folder in folders:
        name = str(folder.relative_to(ROOT))
        actual = {p.name for p in folder.glob("*.py") if not p.name.startswith("__")}
        assert listed.get(name) == actual, (
            f"docs/ARCHITECTURE.md's map of {name}/: missing {sorted(actual - listed.get(name, set()))}, "
            f"gone {sorted(listed.get(name, set()) - actual)}"
        )
    assert set(listed) == {str(f.relative_to(ROOT)) for f in folders}
