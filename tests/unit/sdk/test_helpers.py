"""The SDK's offer helpers, with no I/O and a fake clock."""

from __future__ import annotations

from meseta.sdk import wire
from meseta.sdk.helpers import DelayScheduling, Gang, first_fit, satisfies
from meseta.sdk.wire import AttributeConstraint, Resources


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def offer(offer_id: str, host: str, cpus: float = 2, gpus: int = 0, **attributes: str) -> wire.Offer:
    return wire.Offer(
        offer_id=offer_id,
        framework_id="f",
        agent_id=f"agent-{host}",
        hostname=host,
        resources=Resources(cpus=cpus, mem=1024, gpus=gpus),
        attributes=attributes,
        allocated_at=0,
        expires_at=60,
    )


def task(task_id: str, cpus: float = 1) -> wire.TaskInfo:
    return wire.TaskInfo(
        task_id=task_id, resources=Resources(cpus=cpus, mem=32), container=wire.ContainerSpec(image="i")
    )


def test_first_fit_packs_in_order() -> None:
    chosen = first_fit(offer("o", "h", cpus=2.5), [task("a", 1), task("b", 2), task("c", 1), task("d", 0.5)])
    assert [t.task_id for t in chosen] == ["a", "c", "d"]


def test_hard_constraints() -> None:
    gpu = offer("o", "h1", gpus=2, rack="r1")
    assert satisfies(gpu, [AttributeConstraint(attribute="rack", op="in", values=("r1", "r2"))], min_gpus=1)
    assert not satisfies(gpu, min_gpus=3)
    assert not satisfies(gpu, [AttributeConstraint(attribute="hostname", op="ne", values=("h1",))])


def test_delay_scheduling_waits_for_locality_then_takes_any_host() -> None:
    clock = Clock()
    delay = DelayScheduling(3.0, {"a": frozenset({"h1"}), "b": frozenset({"h2"})}, clock=clock)
    pending = [task("a"), task("b")]
    # h3 holds no block: declined while the wait lasts.
    assert delay.choose(offer("o1", "h3"), pending) == []
    clock.now = 1.0
    assert [t.task_id for t in delay.choose(offer("o2", "h1"), pending)] == [
        "a"
    ]  # local: launched, clock restarts
    clock.now = 3.5
    assert delay.choose(offer("o3", "h3"), [task("b")]) == []  # 2.5 s since the last local launch
    clock.now = 4.1
    assert [t.task_id for t in delay.choose(offer("o4", "h3"), [task("b")])] == ["b"]  # waited long enough


def test_delay_zero_is_plain_fifo() -> None:
    delay = DelayScheduling(0.0, {"a": frozenset({"h1"}), "b": frozenset({"h9"})}, clock=Clock())
    # No locality preference: 'a' goes first even on b's host.
    assert [t.task_id for t in delay.choose(offer("o", "h9", cpus=1), [task("a"), task("b")])] == ["a"]


def test_gang_holds_until_ready_then_plans_every_member() -> None:
    clock = Clock()
    gang = Gang(size=5, slot=Resources(cpus=1, mem=32), timeout=10, clock=clock)
    assert not gang.hold(offer("tiny", "h0", cpus=0.5))  # no slot in it
    assert gang.hold(offer("o1", "h1", cpus=2))
    assert gang.hold(offer("o2", "h2", cpus=2))
    assert not gang.ready and gang.slots_held == 4
    assert gang.hold(offer("o3", "h3", cpus=2))
    assert gang.ready
    plan = gang.plan(lambda i: task(f"rank-{i}"))
    assert sorted(t.task_id for _, tasks in plan for t in tasks) == [f"rank-{i}" for i in range(5)]
    assert [len(tasks) for _, tasks in plan] == [2, 2, 1]
    assert gang.held == {}


def test_gang_releases_on_timeout() -> None:
    clock = Clock()
    gang = Gang(size=8, slot=Resources(cpus=1, mem=32), timeout=2, clock=clock)
    gang.hold(offer("o1", "h1"))
    clock.now = 1.9
    assert not gang.expired()
    clock.now = 2.0
    assert gang.expired()
    assert gang.release() == ["o1"]
    assert not gang.expired() and gang.slots_held == 0
