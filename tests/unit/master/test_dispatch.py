"""The master's dispatch: one handler per inbound message, each answer to its own caller, secrets."""

from __future__ import annotations

import asyncio

import pytest

from meseta.master.dispatch import HANDLERS, INBOUND
from meseta.runtime.dispatch import check_coverage
from meseta.sdk import wire
from tests.unit.master.fakes import FakeMaster, Incoming, of


def test_the_table_covers_exactly_what_the_master_receives() -> None:
    check_coverage("master", HANDLERS, INBOUND)
    with pytest.raises(ValueError, match="no master handler for \\['Heartbeat'\\]"):
        check_coverage("master", {k: v for k, v in HANDLERS.items() if k is not wire.Heartbeat}, INBOUND)
    with pytest.raises(ValueError, match="never receives: \\['Offers'\\]"):
        check_coverage("master", {**HANDLERS, wire.Offers: HANDLERS[wire.Heartbeat]}, INBOUND)


async def test_a_refusal_is_answered_to_its_own_caller() -> None:
    # The master kept each message's reply_to on itself, so a status update handled while a call's
    # handler awaited a publish (four queues' handlers interleave) took the call's answer: the second of
    # these two refusals was lost (seen failing on 63b6bd1: ['amq.gen-A'] == ['amq.gen-A', 'amq.gen-A']).
    master = FakeMaster()
    decline = wire.Decline(framework_id="fw-gone", offer_ids=("offer-1", "offer-2"))
    update = wire.StatusUpdate(
        agent_id="agent-1",
        framework_id="fw-other",
        status=wire.TaskStatus(task_id="t1", state=wire.TaskState.RUNNING, agent_id="agent-1"),
    )
    status = wire.StatusUpdates(agent_id="agent-1", updates=(update,))
    await asyncio.gather(
        master.dispatcher.handle(decline, Incoming("amq.gen-A")),  # type: ignore[arg-type]
        master.dispatcher.handle(status, Incoming(None)),  # type: ignore[arg-type]
    )
    answers = [
        (s.routing_key, s.message) for s in master.publisher.take() if isinstance(s.message, wire.Error)
    ]
    assert [key for key, _ in answers] == ["amq.gen-A", "amq.gen-A"], answers
    assert all(e.code == wire.ErrorCode.UNKNOWN_OFFER for _, e in answers)


async def test_a_call_with_the_wrong_secret_is_refused_to_the_caller_only() -> None:
    master = FakeMaster()
    framework_id, secret = await master.framework()
    sent = await master.handle(wire.Teardown(framework_id=framework_id, secret="guess"), reply_to="amq.gen-X")
    (refusal,) = of(sent, wire.Error)
    assert refusal.code == wire.ErrorCode.UNAUTHORIZED
    assert [s.routing_key for s in sent] == ["amq.gen-X"]  # nothing to the framework it pretends to be
    assert framework_id in master.cluster.frameworks
    await master.handle(wire.Teardown(framework_id=framework_id, secret=secret))
    assert framework_id not in master.cluster.frameworks
    # Its queue goes with it: nobody reads it any more, and it held the broker's memory for ever.
    assert master.publisher.deleted == [wire.framework_queue(framework_id)]
