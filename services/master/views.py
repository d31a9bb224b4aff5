"""The state API's documents: pydantic models of what an operator sees, built from the master's state.

One model per resource of the API; :func:`openapi` describes them all, so the description cannot drift
from what is served.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from meseta.master import draining
from meseta.master.activity import Activity
from meseta.master.cluster import Cluster
from meseta.master.starvation import assess
from meseta.sdk import wire
from meseta.sdk.wire import Resources


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class AgentView(_View):
    agent_id: str
    hostname: str
    attributes: dict[str, str]
    total: Resources
    used: Resources
    offered: Resources
    free: Resources
    utilization: dict[str, float]
    """Per scalar resource: (used + offered) / total; 0 where the agent has none."""
    tasks: int
    seconds_since_heartbeat: float
    state: str = "ACTIVE"
    """ACTIVE, DRAINING (drained by an operator or a maintenance window, tasks still there) or DRAINED."""
    drain_deadline: float | None = None
    """When a drained agent's remaining tasks are killed (wall clock)."""


class FrameworkView(_View):
    framework_id: str
    name: str
    role: str
    weight: float
    priority: int
    suppressed: bool
    connected: bool
    tasks: int
    offers: int
    dominant_share: float
    fair_share: float
    """weight / sum of weights of the frameworks that want offers."""
    declined_offer_ratio: float
    offers_sent: int
    offers_accepted: int
    offers_declined: int
    offers_rescinded: int
    tasks_launched: int
    starving: bool
    offer_storm: bool


class TaskView(_View):
    framework_id: str
    task_id: str
    agent_id: str
    state: wire.TaskState
    resources: Resources
    healthy: bool | None = None
    ready: bool | None = None


class OfferView(_View):
    offer_id: str
    framework_id: str
    agent_id: str
    hostname: str
    resources: Resources
    expires_in: float


class CycleView(_View):
    offer_id: str
    framework_id: str
    agent_id: str
    decision: str
    tasks: int
    allocated_at: float
    offered_at: float
    answered_at: float | None
    round_trip_ms: float | None


class ShareSampleView(_View):
    at: float
    shares: dict[str, float]


class Totals(_View):
    total: Resources
    used: Resources
    offered: Resources


class LeaderView(_View):
    leading: bool
    name: str
    epoch: int
    agents: int = 0
    frameworks: int = 0
    tasks: int = 0
    offers: int = 0
    """Counts only: cheap to serve at any cluster size (``/api/v1/state`` renders everything)."""


class StateView(_View):
    """The whole cluster, as the leading master sees it."""

    leader: LeaderView
    time: float
    totals: Totals
    agents: list[AgentView]
    frameworks: list[FrameworkView]
    tasks: list[TaskView]
    offers: list[OfferView]
    cycles: list[CycleView]
    """The most recent answered offer cycles, oldest first."""
    history: list[ShareSampleView]
    """Each framework's dominant share, sampled about once a second."""


def _utilization(used: Resources, total: Resources) -> dict[str, float]:
    totals = total.scalars()
    return {n: round(v / totals[n], 4) if totals[n] > 0 else 0.0 for n, v in used.scalars().items()}


def agents(cluster: Cluster, now: float) -> list[AgentView]:
    return [
        AgentView(
            agent_id=a.agent_id,
            hostname=a.hostname,
            attributes=a.attributes,
            total=a.total,
            used=a.used,
            offered=a.offered,
            free=a.free,
            utilization=_utilization(a.used + a.offered, a.total),
            tasks=len(a.tasks),
            seconds_since_heartbeat=round(now - a.last_seen, 2),
            state=draining.state_of(cluster, a.agent_id),
            drain_deadline=drain.deadline if (drain := cluster.drains.get(a.agent_id)) is not None else None,
        )
        for a in sorted(cluster.agents.values(), key=lambda a: a.agent_id)
    ]


def frameworks(cluster: Cluster, now: float, starvation_after: float) -> list[FrameworkView]:
    health = {h.framework_id: h for h in assess(cluster, now, starvation_after)}
    views = []
    for fw in sorted(cluster.frameworks.values(), key=lambda f: f.subscribed_at):
        h, s = health[fw.framework_id], fw.stats
        views.append(
            FrameworkView(
                framework_id=fw.framework_id,
                name=fw.name,
                role=fw.role,
                weight=fw.weight,
                priority=fw.priority,
                suppressed=fw.suppressed,
                connected=fw.disconnected_at is None,
                tasks=len(fw.tasks),
                offers=len(fw.offers),
                dominant_share=h.share,
                fair_share=h.fair_share,
                declined_offer_ratio=h.decline_ratio,
                offers_sent=s.offers_sent,
                offers_accepted=s.offers_accepted,
                offers_declined=s.offers_declined,
                offers_rescinded=s.offers_rescinded,
                tasks_launched=s.tasks_launched,
                starving=h.starving,
                offer_storm=h.offer_storm,
            )
        )
    return views


def tasks(cluster: Cluster) -> list[TaskView]:
    return [
        TaskView(
            framework_id=t.framework_id,
            task_id=t.task_id,
            agent_id=t.agent_id,
            state=t.state,
            resources=t.resources,
            healthy=t.healthy,
            ready=t.ready,
        )
        for t in itertools.chain(cluster.tasks.values(), cluster.unreachable_tasks.values())
    ]


def offers(cluster: Cluster, now: float) -> list[OfferView]:
    return [
        OfferView(
            offer_id=o.offer_id,
            framework_id=o.framework_id,
            agent_id=o.agent_id,
            hostname=o.hostname,
            resources=o.resources,
            expires_in=round(o.expires_at - now, 2),
        )
        for o in cluster.offers.values()
    ]


def cycles(activity: Activity) -> list[CycleView]:
    return [
        CycleView(
            offer_id=c.offer_id,
            framework_id=c.framework_id,
            agent_id=c.agent_id,
            decision=c.decision,
            tasks=c.tasks,
            allocated_at=c.allocated_at,
            offered_at=c.offered_at,
            answered_at=c.answered_at,
            round_trip_ms=None if c.round_trip_ms is None else round(c.round_trip_ms, 3),
        )
        for c in activity.cycles
    ]


def history(activity: Activity) -> list[ShareSampleView]:
    return [ShareSampleView(at=s.at, shares=s.shares) for s in activity.samples]


def state(cluster: Cluster, activity: Activity, leader: LeaderView, starvation_after: float) -> StateView:
    now = time.time()
    return StateView(
        leader=leader,
        time=now,
        totals=Totals(
            total=cluster.total,
            used=wire.total(a.used for a in cluster.agents.values()),
            offered=wire.total(a.offered for a in cluster.agents.values()),
        ),
        agents=agents(cluster, now),
        frameworks=frameworks(cluster, now, starvation_after),
        tasks=tasks(cluster),
        offers=offers(cluster, now),
        cycles=cycles(activity),
        history=history(activity),
    )


ROUTES: dict[str, tuple[str, type[BaseModel], bool]] = {
    "/api/v1/state": ("The whole cluster", StateView, False),
    "/api/v1/agents": ("Agents with total, used, offered and free resources", AgentView, True),
    "/api/v1/frameworks": ("Frameworks with shares and offer statistics", FrameworkView, True),
    "/api/v1/tasks": ("Live tasks", TaskView, True),
    "/api/v1/offers": ("Outstanding offers", OfferView, True),
    "/api/v1/cycles": ("Recent answered offer cycles", CycleView, True),
    "/api/v1/history": ("Dominant shares over time", ShareSampleView, True),
    "/api/v1/leader": ("This master: does it lead, and at which epoch", LeaderView, False),
}
"""path -> (summary, document model, whether the document is a list of it)."""


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the state API."""
    _, schemas = models_json_schema(
        [(model, "serialization") for _, model, _ in ROUTES.values()],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, Any] = {}
    for path, (summary, model, many) in ROUTES.items():
        ref = {"$ref": f"#/components/schemas/{model.__name__}"}
        body = {"type": "array", "items": ref} if many else ref
        responses: dict[str, Any] = {
            "200": {"description": summary, "content": {"application/json": {"schema": body}}}
        }
        if path != "/api/v1/leader":
            responses["503"] = {
                "description": "This master does not lead: ask the leader",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LeaderView"}}},
            }
        paths[path] = {
            "get": {"summary": summary, "operationId": path.rsplit("/", 1)[1], "responses": responses}
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Meseta master state API", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {})},
    }
