"""Every Meseta process runs on uvloop's event loop (``meseta.sdk.eventloop``)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import uvloop

from meseta.sdk import eventloop


async def _loop_kind() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_run_runs_on_uvloop_and_returns_the_result() -> None:
    assert eventloop.run(_loop_kind()) is uvloop.Loop


def test_run_works_in_a_thread() -> None:
    # The leader's lease keeper runs its own loop in a thread.
    kinds: list[type] = []
    thread = threading.Thread(target=lambda: kinds.append(eventloop.run(_loop_kind())))
    thread.start()
    thread.join(10)
    assert kinds == [uvloop.Loop]


def test_asyncio_loop_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV, "asyncio")
    assert eventloop.run(_loop_kind()) is not uvloop.Loop
    monkeypatch.setenv(eventloop.ENV, "tokio")
    with pytest.raises(ValueError, match="MESETA_EVENT_LOOP"):
        eventloop.loop_factory()
