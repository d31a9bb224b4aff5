"""Checks on a framework's ACCEPT: pure, so every refusal reason is unit-testable."""

from __future__ import annotations

from dataclasses import dataclass

from meseta.master.cluster import Cluster
from meseta.sdk import wire
from meseta.sdk.wire import ErrorCode


@dataclass(frozen=True)
class Refusal:
    """Why an ACCEPT cannot be carried out."""

    code: ErrorCode
    message: str


def validate_accept(cluster: Cluster, call: wire.Accept, now: float) -> list[wire.Offer] | Refusal:
    """The offers an ACCEPT consumes, or why it is refused. Nothing is changed either way."""
    if call.framework_id not in cluster.frameworks:
        return Refusal(ErrorCode.UNKNOWN_FRAMEWORK, f"framework {call.framework_id} is not subscribed")
    offers: list[wire.Offer] = []
    for offer_id in dict.fromkeys(call.offer_ids):
        offer = cluster.offers.get(offer_id)
        if offer is None or offer.expires_at <= now:
            return Refusal(ErrorCode.UNKNOWN_OFFER, f"offer {offer_id} is unknown, expired or already used")
        if offer.framework_id != call.framework_id:
            return Refusal(ErrorCode.FOREIGN_OFFER, f"offer {offer_id} was made to another framework")
        offers.append(offer)
    if len({o.agent_id for o in offers}) > 1:
        return Refusal(ErrorCode.OFFERS_ON_SEVERAL_AGENTS, "all offers of one ACCEPT must be on one agent")
    seen: set[str] = set()
    for task in call.tasks:
        if task.task_id in seen or (call.framework_id, task.task_id) in cluster.tasks:
            return Refusal(ErrorCode.DUPLICATE_TASK_ID, f"task id {task.task_id} is already in use")
        seen.add(task.task_id)
    offered = wire.total(o.resources for o in offers)
    new_executors = executors_to_start(cluster, call, offers[0].agent_id)
    wanted = wire.total([*(t.resources for t in call.tasks), *(e.resources for e in new_executors)])
    if wanted.port_count() != sum(t.resources.port_count() for t in call.tasks):
        return Refusal(ErrorCode.INVALID_TASK, "two tasks ask for the same host port")
    if not wanted.fits_in(offered):
        return Refusal(
            ErrorCode.INSUFFICIENT_RESOURCES,
            f"tasks need {_brief(wanted)} but the offers hold {_brief(offered)}",
        )
    return offers


def _brief(r: wire.Resources) -> str:
    ports = f", ports={[(p.begin, p.end) for p in r.ports]}" if r.ports else ""
    return f"cpus={r.cpus:g}, mem={r.mem:g}, disk={r.disk:g}, gpus={r.gpus}{ports}"


def executors_to_start(cluster: Cluster, call: wire.Accept, agent_id: str) -> list[wire.ExecutorInfo]:
    """The executors these tasks need that do not run on the agent yet: their resources are charged once."""
    needed: dict[str, wire.ExecutorInfo] = {}
    for task in call.tasks:
        if task.executor is not None:
            needed.setdefault(task.executor.executor_id, task.executor)
    return [
        info
        for executor_id, info in needed.items()
        if (call.framework_id, wire.executor_task_id(executor_id, agent_id)) not in cluster.tasks
    ]
