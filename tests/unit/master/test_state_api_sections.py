"""The state API renders the document asked for, not the whole state (slow at 10,000 agents)."""

from __future__ import annotations

import pytest

from meseta.master import api as state_api
from meseta.master.activity import Activity
from meseta.master.cluster import Cluster
from meseta.master.views import LeaderView


def test_a_section_renders_without_the_whole_state(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[str] = []
    whole = state_api.views.state

    def counting(*args: object) -> object:
        rendered.append("state")
        return whole(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(state_api.views, "state", counting)
    api = state_api.StateApi(Cluster(), Activity(), lambda: LeaderView(leading=True, name="m", epoch=1), 60.0)
    for name in ("agents", "frameworks", "tasks", "offers", "cycles", "history"):
        assert api._rendered(name) == []
    assert rendered == []
    assert api._rendered("state").leader.epoch == 1
    api._rendered("state")  # cached
    assert rendered == ["state"]
