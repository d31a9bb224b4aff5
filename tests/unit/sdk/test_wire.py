"""The wire contract: round-trips, refusals with reasons, resource arithmetic."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from meseta.sdk import wire
from meseta.sdk.wire import PortRange, Resources


def offer() -> wire.Offer:
    return wire.Offer(
        offer_id="offer-1",
        framework_id="fw-1",
        agent_id="agent-1",
        hostname="host-1",
        resources=Resources(cpus=2, mem=1024, ports=(PortRange(begin=31000, end=31010),)),
        attributes={"rack": "r1"},
        allocated_at=1.0,
        expires_at=31.0,
    )


def task(task_id: str = "t-1", cpus: float = 1, mem: float = 64) -> wire.TaskInfo:
    return wire.TaskInfo(
        task_id=task_id,
        resources=Resources(cpus=cpus, mem=mem),
        container=wire.ContainerSpec.shell("img", "true", env={"A": "1"}),
    )


@pytest.mark.parametrize(
    ("message", "channel"),
    [
        (wire.RegisterAgent(agent_id="a", hostname="h", resources=Resources(cpus=1, mem=1)), wire.HEARTBEATS),
        (wire.Heartbeat(agent_id="a", free=Resources(cpus=1)), wire.HEARTBEATS),
        (wire.LaunchTasks(agent_id="a", framework_id="f", tasks=(task(),)), wire.LAUNCHES),
        (wire.KillTask(agent_id="a", framework_id="f", task_id="t"), wire.LAUNCHES),
        (
            wire.StatusUpdates(
                agent_id="a",
                updates=(
                    wire.StatusUpdate(
                        agent_id="a",
                        framework_id="f",
                        status=wire.TaskStatus(task_id="t", state=wire.TaskState.FAILED, exit_code=3),
                    ),
                ),
            ),
            wire.STATUS,
        ),
        (wire.Subscribe(name="batch", role="analytics", weight=2), wire.CALLS),
        (wire.Accept(framework_id="f", offer_ids=("o",), tasks=(task(),), refuse_seconds=1), wire.CALLS),
        (wire.Decline(framework_id="f", offer_ids=("o",)), wire.CALLS),
        (wire.Offers(framework_id="f", offers=(offer(),)), wire.FRAMEWORK_EVENTS),
        (
            wire.Error(framework_id="f", code=wire.ErrorCode.FOREIGN_OFFER, message="no"),
            wire.FRAMEWORK_EVENTS,
        ),
        (
            wire.ResourcesRecovered(
                items=(wire.Recovered(framework_id="f", agent_id="a", resources=Resources(cpus=1)),)
            ),
            wire.TO_ALLOCATOR,
        ),
        (
            wire.Allocations(
                grants=(wire.Grant(framework_id="f", agent_id="a", resources=Resources(cpus=1)),)
            ),
            wire.TO_MASTER,
        ),
        (
            wire.Acknowledge(
                framework_id="f", acks=(wire.Acknowledged(agent_id="a", task_id="t", uuid="ab" * 16),)
            ),
            wire.CALLS,
        ),
        (
            wire.Updates(
                framework_id="f", statuses=(wire.TaskStatus(task_id="t", state=wire.TaskState.RUNNING),)
            ),
            wire.FRAMEWORK_EVENTS,
        ),
    ],
)
def test_every_message_round_trips(message: wire.Message, channel: wire.Channel) -> None:
    assert wire.decode(wire.encode(message), channel) == message


def test_messages_are_frozen_and_forbid_extra_fields() -> None:
    hb = wire.Heartbeat(agent_id="a", free=Resources())
    with pytest.raises(ValidationError):
        hb.agent_id = "b"  # type: ignore[misc]
    data = json.loads(wire.encode(hb))
    data["surprise"] = 1
    with pytest.raises(wire.DecodeError, match="surprise"):
        wire.decode(json.dumps(data).encode(), wire.HEARTBEATS)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x00\xffgarbage", "malformed: not JSON"),
        (b"[1, 2]", "malformed: expected a JSON object"),
        (
            b'{"type": "HEARTBEAT", "version": 1, "agent_id": "a", "free": {}}',
            "wrong version: 1, this side speaks 2",
        ),
        (b'{"type": "HEARTBEAT", "version": 3, "agent_id": "a", "free": {}}', "wrong version: 3"),
        (b'{"type": "HEARTBEAT", "agent_id": "a", "free": {}}', "wrong version: None"),
        (b'{"type": "LAUNCH", "version": 2}', "unknown type 'LAUNCH' on meseta.heartbeats"),
        (b'{"type": "HEARTBEAT", "version": 2, "agent_id": "a", "free": {"cpus": -1}}', "invalid HEARTBEAT"),
        (b'{"type": "HEARTBEAT", "version": 2, "agent_id": "a b", "free": {}}', "agent_id"),
        (b"{" + b" " * wire.MAX_MESSAGE_BYTES + b"}", "oversized"),
    ],
)
def test_decode_refuses_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(wire.DecodeError) as caught:
        wire.decode(body, wire.HEARTBEATS)
    assert reason in caught.value.reason


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Resources(cpus=-1)
    with pytest.raises(ValidationError, match="cpus > 0"):
        task(cpus=0)
    with pytest.raises(ValidationError):
        PortRange(begin=10, end=5)
    with pytest.raises(ValidationError):
        wire.Accept(framework_id="f", offer_ids=())
    with pytest.raises(ValidationError):
        wire.Subscribe(name="x", weight=0)


def test_resource_arithmetic_rounds_and_handles_ports() -> None:
    a = Resources(cpus=0.1, mem=10, ports=(PortRange(begin=100, end=199),))
    b = Resources(cpus=0.2, mem=5, ports=(PortRange(begin=150, end=159),))
    assert (a + b - b).cpus == pytest.approx(0.1)
    assert (Resources(cpus=0.3) - Resources(cpus=0.1) - Resources(cpus=0.2)).is_empty()
    left = a - Resources(ports=(PortRange(begin=150, end=159),))
    assert left.ports == (PortRange(begin=100, end=149), PortRange(begin=160, end=199))
    assert left.port_count() == 90
    assert Resources(ports=(PortRange(begin=120, end=125),)).fits_in(a)
    assert not Resources(ports=(PortRange(begin=195, end=205),)).fits_in(a)
    assert not Resources(cpus=0.2).fits_in(a)
    with pytest.raises(ValueError, match="negative"):
        _ = a - b
    assert wire.total([a, b]).mem == 15


def test_a_total_is_the_sum_term_by_term() -> None:
    """``total`` sums in one pass what adding one by one gives: the same rounding at each step, ports
    merged where they touch or overlap, and an empty vector for nothing."""
    terms = [Resources(cpus=0.1, mem=16.0001, disk=0.0004, gpus=1) for _ in range(50)]
    terms += [Resources(cpus=0.3333), Resources(ports=(PortRange(begin=100, end=150),))]
    terms += [Resources(ports=(PortRange(begin=140, end=199), PortRange(begin=300, end=300)))]
    one_by_one = Resources()
    for term in terms:
        one_by_one = one_by_one + term
    assert wire.total(terms) == one_by_one
    assert wire.total(terms).ports == (PortRange(begin=100, end=199), PortRange(begin=300, end=300))
    scalars = wire.total(iter(terms[:50]))  # a generator, as the master passes
    assert (scalars.cpus, scalars.mem, scalars.disk, scalars.gpus, scalars.ports) == (5.0, 800.0, 0.0, 50, ())
    assert wire.total([]) == Resources()


def test_terminal_states() -> None:
    terminal = {"FINISHED", "FAILED", "KILLED", "LOST", "ERROR", "GONE", "UNKNOWN"}
    assert {s for s in wire.TaskState if s.terminal} == terminal
    # UNREACHABLE is not: the task may still run, and comes back RUNNING with its agent.
    assert not wire.TaskState.UNREACHABLE.terminal and not wire.TaskState.KILLING.terminal


def test_health_checks_refuse_what_cannot_run() -> None:
    with pytest.raises(ValueError, match="needs a command"):
        wire.HealthCheck(kind="command")
    for bad in (
        {"kind": "http", "path": "no-slash"},
        {"kind": "tcp", "port": 0},
        {"kind": "udp"},
        {"kind": "http", "interval_seconds": 0},
        {"kind": "tcp", "max_consecutive_failures": 0},
    ):
        with pytest.raises(ValueError):
            wire.HealthCheck.model_validate(bad)
    with pytest.raises(ValueError):
        wire.ContainerSpec(image="x", pull="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        short = wire.TaskInfo.model_validate(
            {
                "task_id": "t",
                "resources": {"cpus": 1, "mem": 1},
                "container": {"image": "x"},
                "kill_signal": "TERM",
            }
        )
        del short
    auth = wire.RegistryAuth(username="u", password="hunter2")
    assert "hunter2" not in repr(auth)


def test_protocol_2_has_one_message_per_concept() -> None:
    # The single forms of v1 are gone from the wire: a v1 sender's STATUS_UPDATE is refused by type.
    every = {t for channel in wire.CHANNELS for t in channel.types}
    for gone in ("STATUS_UPDATE", "UPDATE", "ACKNOWLEDGEMENTS", "ACKNOWLEDGE_UPDATE", "ALLOCATION"):
        assert gone not in every
    assert "RESOURCES_RECOVERED_BATCH" not in every
    body = b'{"type": "STATUS_UPDATE", "version": 2, "agent_id": "a"}'
    with pytest.raises(wire.DecodeError, match="unknown type 'STATUS_UPDATE'"):
        wire.decode(body, wire.STATUS)


def test_a_status_batch_names_one_agent() -> None:
    update = wire.StatusUpdate(
        agent_id="other", framework_id="f", status=wire.TaskStatus(task_id="t", state=wire.TaskState.RUNNING)
    )
    with pytest.raises(ValidationError, match="agent that sends the batch"):
        wire.StatusUpdates(agent_id="a", updates=(update,))
