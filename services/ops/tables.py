"""The state as terminal tables (``meseta status | agents | frameworks | tasks | offers``)."""

from __future__ import annotations

from rich.table import Table

from meseta.master.views import StateView
from meseta.sdk.wire import Resources


def _res(r: Resources) -> str:
    parts = [f"cpus {r.cpus:g}", f"mem {r.mem:g}"]
    if r.gpus:
        parts.append(f"gpus {r.gpus}")
    return ", ".join(parts)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def status(s: StateView) -> Table:
    t = Table(title="Meseta cluster", show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    t.add_row("leader", f"{s.leader.name} (epoch {s.leader.epoch})")
    t.add_row("agents", str(len(s.agents)))
    t.add_row("frameworks", str(len(s.frameworks)))
    t.add_row("tasks", str(len(s.tasks)))
    t.add_row("offers outstanding", str(len(s.offers)))
    total = s.totals.total.scalars()
    for name in ("cpus", "mem", "gpus"):
        if total[name] > 0:
            used = s.totals.used.scalars()[name]
            offered = s.totals.offered.scalars()[name]
            t.add_row(name, f"{used:g} used + {offered:g} offered of {total[name]:g}")
    trips = sorted(c.round_trip_ms for c in s.cycles if c.round_trip_ms is not None)
    if trips:
        t.add_row("offer round trip p50", f"{trips[len(trips) // 2]:.1f} ms over the last {len(trips)}")
    return t


def agents(s: StateView) -> Table:
    t = Table(title="Agents")
    for col in ("agent", "host", "total", "used", "offered", "cpu util", "tasks", "attributes"):
        t.add_column(col, justify="right" if col in ("tasks", "cpu util") else "left")
    for a in s.agents:
        attrs = " ".join(f"{k}={v}" for k, v in sorted(a.attributes.items()))
        t.add_row(
            a.agent_id, a.hostname, _res(a.total), _res(a.used), _res(a.offered),
            _pct(a.utilization["cpus"]), str(a.tasks), attrs,
        )  # fmt: skip
    return t


def frameworks(s: StateView) -> Table:
    t = Table(title="Frameworks")
    for col in ("framework", "name", "role", "weight", "share", "fair share", "tasks", "declined", "flags"):
        t.add_column(
            col, justify="right" if col in ("weight", "share", "fair share", "tasks", "declined") else "left"
        )
    for f in s.frameworks:
        flags = [f.starving and "starving", f.offer_storm and "offer-storm", f.suppressed and "suppressed",
                 not f.connected and "disconnected"]  # fmt: skip
        t.add_row(
            f.framework_id, f.name, f.role, f"{f.weight:g}", _pct(f.dominant_share), _pct(f.fair_share),
            str(f.tasks), _pct(f.declined_offer_ratio), " ".join(x for x in flags if x),
        )  # fmt: skip
    return t


def tasks(s: StateView) -> Table:
    t = Table(title="Tasks")
    for col in ("task", "framework", "agent", "state", "resources"):
        t.add_column(col)
    for task in sorted(s.tasks, key=lambda x: (x.framework_id, x.task_id)):
        t.add_row(task.task_id, task.framework_id, task.agent_id, task.state.value, _res(task.resources))
    return t


def offers(s: StateView) -> Table:
    t = Table(title="Outstanding offers")
    for col in ("offer", "framework", "agent", "resources", "expires in"):
        t.add_column(col, justify="right" if col == "expires in" else "left")
    for o in s.offers:
        t.add_row(o.offer_id, o.framework_id, o.agent_id, _res(o.resources), f"{o.expires_in:.1f} s")
    return t


TABLES = {"status": status, "agents": agents, "frameworks": frameworks, "tasks": tasks, "offers": offers}
