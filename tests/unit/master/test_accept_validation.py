"""The master's checks on ACCEPT, with no I/O."""

from __future__ import annotations

import pytest

from meseta.master.cluster import AgentInfo, Cluster, FrameworkInfo, TaskEntry
from meseta.master.validation import Refusal, validate_accept
from meseta.sdk import wire
from meseta.sdk.wire import ErrorCode, Resources


@pytest.fixture
def cluster() -> Cluster:
    c = Cluster()
    for agent_id in ("a1", "a2"):
        c.add_agent(AgentInfo(agent_id, agent_id, {}, Resources(cpus=4, mem=4096), last_seen=0))
    for framework_id in ("f1", "f2"):
        c.frameworks[framework_id] = FrameworkInfo(framework_id, framework_id, "*", 1.0)
    for offer_id, framework_id, agent_id in (("o1", "f1", "a1"), ("o2", "f1", "a2"), ("o3", "f2", "a1")):
        c.add_offer(
            wire.Offer(
                offer_id=offer_id,
                framework_id=framework_id,
                agent_id=agent_id,
                hostname=agent_id,
                resources=Resources(cpus=2, mem=2048),
                allocated_at=0,
                expires_at=100,
            )
        )
    return c


def task(task_id: str, cpus: float = 1) -> wire.TaskInfo:
    return wire.TaskInfo(
        task_id=task_id, resources=Resources(cpus=cpus, mem=64), container=wire.ContainerSpec(image="i")
    )


def accept(*offer_ids: str, tasks: tuple[wire.TaskInfo, ...] = (), framework_id: str = "f1") -> wire.Accept:
    return wire.Accept(framework_id=framework_id, offer_ids=offer_ids, tasks=tasks)


@pytest.mark.parametrize(
    ("call", "now", "code"),
    [
        (accept("nope", tasks=(task("t"),)), 0, ErrorCode.UNKNOWN_OFFER),
        (accept("o1", tasks=(task("t"),)), 100, ErrorCode.UNKNOWN_OFFER),  # expired
        (accept("o3", tasks=(task("t"),)), 0, ErrorCode.FOREIGN_OFFER),
        (accept("o1", "o2", tasks=(task("t"),)), 0, ErrorCode.OFFERS_ON_SEVERAL_AGENTS),
        (accept("o1", tasks=(task("t", cpus=3),)), 0, ErrorCode.INSUFFICIENT_RESOURCES),
        (accept("o1", tasks=(task("t"), task("t"))), 0, ErrorCode.DUPLICATE_TASK_ID),
        (accept("o1", tasks=(task("t"),), framework_id="ghost"), 0, ErrorCode.UNKNOWN_FRAMEWORK),
    ],
)
def test_refusals(cluster: Cluster, call: wire.Accept, now: float, code: ErrorCode) -> None:
    result = validate_accept(cluster, call, now)
    assert isinstance(result, Refusal)
    assert result.code == code


def test_a_fitting_accept_returns_its_offers_and_changes_nothing(cluster: Cluster) -> None:
    before = dict(cluster.offers)
    result = validate_accept(cluster, accept("o1", tasks=(task("t1"), task("t2"))), now=0)
    assert result == [cluster.offers["o1"]]
    assert cluster.offers == before


def test_task_ids_in_use_are_refused(cluster: Cluster) -> None:
    cluster.add_task(TaskEntry("f1", "busy", "a1", Resources(cpus=1, mem=64)))
    result = validate_accept(cluster, accept("o1", tasks=(task("busy"),)), now=0)
    assert isinstance(result, Refusal) and result.code == ErrorCode.DUPLICATE_TASK_ID
    # Task ids are per framework: f2 may use the same id.
    assert not isinstance(
        validate_accept(cluster, accept("o3", tasks=(task("busy"),), framework_id="f2"), 0), Refusal
    )
