"""``meseta trace report``: where the time of each offer cycle goes, from its spans.

An offer cycle is one trace (the allocator roots it). Its stages are the intervals between the starts of
the spans that mark each hand-over, so a cycle's stages add up to the cycle exactly:

    allocate  allocator's decision, and the hop to the master       (allocator allocate -> master ALLOCATION)
    offer     master's offer, and the hop to the framework          (-> framework decide)
    decide    framework's decision, and the hop back to the master  (-> master ACCEPT)
    accept    master's checks, and the hop to the agent             (-> agent LAUNCH)
    launch    container start, until RUNNING reaches the master     (-> master STATUS_UPDATE, RUNNING)

Spans come from an OTLP/JSON lines file (the collector's file export, or ``meseta collector``'s).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meseta.sdk.stats import percentile

STAGES: tuple[tuple[str, str], ...] = (
    ("allocate", "allocator allocate"),
    ("offer", "master ALLOCATION"),
    ("decide", "framework decide"),
    ("accept", "master ACCEPT"),
    ("launch", "agent LAUNCH"),
)
END = "master STATUS_UPDATE"
"""The cycle ends when the first RUNNING update of the accepted tasks reaches the master."""


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]


@dataclass
class Cycle:
    """One complete offer cycle: its framework, and milliseconds per stage."""

    trace_id: str
    framework: str
    start_ns: int
    stages: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.stages.values())


def _value(v: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return int(v["intValue"])
    return None


def read_spans(path: Path) -> Iterator[Span]:
    """Every span in an OTLP/JSON lines file."""
    with path.open() as f:
        for line in f:
            if not line.strip():
                continue
            for rs in json.loads(line).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for s in ss.get("spans", []):
                        yield Span(
                            trace_id=s["traceId"],
                            span_id=s["spanId"],
                            parent_id=s.get("parentSpanId", ""),
                            name=s["name"],
                            start_ns=int(s["startTimeUnixNano"]),
                            end_ns=int(s["endTimeUnixNano"]),
                            attributes={a["key"]: _value(a["value"]) for a in s.get("attributes", [])},
                        )


def cycles(spans: Iterable[Span]) -> tuple[list[Cycle], int]:
    """The complete cycles among ``spans``, and how many traces began a cycle but did not complete one
    (declined, rescinded, or still going when the spans were collected)."""
    traces: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    done: list[Cycle] = []
    incomplete = 0
    for trace_id, group in traces.items():
        marks: dict[str, Span] = {}
        for stage, name in STAGES:
            first = min((s for s in group if s.name == name), key=lambda s: s.start_ns, default=None)
            if first is not None:
                marks[stage] = first
        if "allocate" not in marks:
            continue  # not an offer cycle
        ends = [s for s in group if s.name == END and s.attributes.get("meseta.task_state") == "RUNNING"]
        if len(marks) < len(STAGES) or not ends:
            incomplete += 1
            continue
        end = min(s.start_ns for s in ends)
        starts = [marks[stage].start_ns for stage, _ in STAGES] + [end]
        stages = {stage: (starts[i + 1] - starts[i]) / 1e6 for i, (stage, _) in enumerate(STAGES)}
        framework = str(
            marks["decide"].attributes.get("meseta.framework_name")
            or marks["allocate"].attributes.get("meseta.framework_id", "?")
        )
        done.append(Cycle(trace_id, framework, starts[0], stages))
    done.sort(key=lambda c: c.start_ns)
    return done, incomplete


@dataclass
class Stats:
    count: int
    mean: float
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        return cls(
            len(values),
            statistics.fmean(values),
            percentile(values, 50),
            percentile(values, 95),
            percentile(values, 99),
        )


@dataclass
class Report:
    """Per framework (and ``all``): stage and cycle statistics, in milliseconds."""

    stages: dict[str, dict[str, Stats]] = field(default_factory=dict)
    cycle: dict[str, Stats] = field(default_factory=dict)
    incomplete: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "incomplete": self.incomplete,
            "frameworks": {
                name: {
                    "cycle": vars(self.cycle[name]),
                    "stages": {stage: vars(st) for stage, st in self.stages[name].items()},
                }
                for name in self.cycle
            },
        }


def report(found: list[Cycle], incomplete: int = 0) -> Report:
    out = Report(incomplete=incomplete)
    groups: dict[str, list[Cycle]] = defaultdict(list)
    for c in found:
        groups[c.framework].append(c)
    if found:
        groups["all"] = found
    for name, group in groups.items():
        out.cycle[name] = Stats.of([c.total for c in group])
        out.stages[name] = {stage: Stats.of([c.stages[stage] for c in group]) for stage, _ in STAGES}
    return out


def plot(found: list[Cycle], rep: Report, path: Path) -> None:
    """Two panels: mean stage latencies per framework (stacked), and every cycle's latency over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [n for n in rep.cycle if n != "all"] + ["all"]
    left = [0.0] * len(names)
    for stage, _ in STAGES:
        widths = [rep.stages[n][stage].mean for n in names]
        bars.barh(names, widths, left=left, label=stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    bars.set_xlabel("mean milliseconds")
    bars.set_title("Where an offer cycle's time goes")
    bars.legend(fontsize=8)
    t0 = found[0].start_ns if found else 0
    for name in names[:-1]:
        mine = [c for c in found if c.framework == name]
        scatter.scatter([(c.start_ns - t0) / 1e9 for c in mine], [c.total for c in mine], s=8, label=name)
    scatter.set_xlabel("seconds into the run")
    scatter.set_ylabel("cycle milliseconds (allocation -> RUNNING)")
    scatter.set_yscale("log")
    scatter.set_title("Every offer cycle")
    scatter.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rep: Report) -> Any:
    """The report as a rich table: one row per framework and stage, then the whole cycle."""
    from rich.table import Table

    t = Table(title=f"Offer cycles (ms){f'; {rep.incomplete} incomplete' if rep.incomplete else ''}")
    for col in ("framework", "stage", "count", "mean", "p50", "p95", "p99"):
        t.add_column(col, justify="left" if col in ("framework", "stage") else "right")
    for name, cycle in rep.cycle.items():
        for stage, st in rep.stages[name].items():
            t.add_row(
                name,
                stage,
                str(st.count),
                f"{st.mean:.2f}",
                f"{st.p50:.2f}",
                f"{st.p95:.2f}",
                f"{st.p99:.2f}",
            )
        t.add_row(
            name, "[bold]cycle[/bold]", str(cycle.count), f"{cycle.mean:.2f}", f"{cycle.p50:.2f}",
            f"{cycle.p95:.2f}", f"{cycle.p99:.2f}", end_section=True,
        )  # fmt: skip
    return t
