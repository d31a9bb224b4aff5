"""An agent's Prometheus metrics, read from its state at scrape time (meseta.runtime.prometheus)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from meseta.runtime.prometheus import common, counter, gauge

if TYPE_CHECKING:
    from meseta.agent.service import AgentService

RESOURCES = ("cpus", "mem", "disk", "gpus")


def families(agent: AgentService) -> list[Metric]:
    """The agent's metric families now."""
    out = common(agent.bus, agent.lag)
    by_framework: Counter[str] = Counter(framework_id for framework_id, _ in agent.runner.tasks)
    out.append(gauge("meseta_agent_tasks", "Tasks on this agent", {(): float(len(agent.runner.tasks))}))
    out.append(
        gauge(
            "meseta_agent_framework_tasks",
            "Tasks on this agent by framework",
            {(f,): float(n) for f, n in by_framework.items()},
            ["framework_id"],
        )
    )
    used = agent.runner.used()
    resources: dict[tuple[str, str], float] = {}
    for name in RESOURCES:
        resources[name, "total"] = float(getattr(agent.resources, name))
        resources[name, "used"] = float(getattr(used, name))
    out.append(gauge("meseta_agent_resources", "This agent's resources", resources, ["resource", "kind"]))
    unacknowledged = float(len(agent.updates.unacknowledged))
    out.append(
        gauge(
            "meseta_agent_unacknowledged_updates", "Status updates not yet acknowledged", {(): unacknowledged}
        )
    )
    out.append(
        counter("meseta_agent_updates_resent", "Status updates sent again", {(): float(agent.updates.resent)})
    )
    return out
