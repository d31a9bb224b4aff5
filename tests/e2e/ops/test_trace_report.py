"""``meseta trace report`` over a real run's spans: stages that add up to the whole cycle."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from meseta.cli import app
from meseta.ops import trace_report as tr
from meseta.ops.collector import Collector, to_json_line
from meseta.testing.local import local_cluster, run_batch, short_task

pytestmark = pytest.mark.e2e


async def test_report_of_a_real_run(
    amqp_url: str, etcd_prefix: str, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=3) as cluster:
        first = await cluster.framework("etl")
        second = await cluster.framework("reports")
        runs = await asyncio.gather(
            run_batch(first, [short_task(f"etl-{i}", cpus=1) for i in range(12)]),
            run_batch(second, [short_task(f"rep-{i}", cpus=1) for i in range(8)]),
        )
    assert all(r.states() == {"FINISHED": n} for r, n in zip(runs, (12, 8), strict=True))
    finished = spans.get_finished_spans()

    # Half the spans reach the file through the collector over OTLP/HTTP, the way services send them;
    # the rest are written by the same encoder the collector uses.
    collector = Collector(tmp_path / "otel")
    await collector.start("127.0.0.1", 0)
    half = len(finished) // 2
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{collector.port}/v1/traces")
    assert await asyncio.to_thread(exporter.export, finished[:half]) == SpanExportResult.SUCCESS
    await collector.stop()
    traces = tmp_path / "otel" / "traces.jsonl"
    with traces.open("a") as f:
        f.write(to_json_line(encode_spans(finished[half:])) + "\n")
    assert collector.received["traces"] == 1

    found, _ = tr.cycles(tr.read_spans(traces))
    # One complete cycle per offer the master accepted (under load an offer can expire before the
    # framework's accept reaches the master: that accept is refused, and its cycle is not complete).
    accepted = {
        f"{s.context.trace_id:032x}"
        for s in finished
        if s.name == "master ACCEPT" and "meseta.error" not in (s.attributes or {})
    }
    # On a mismatch, the spans of each incomplete trace say which hand-over is missing.
    missing = {
        t: [
            (s.name, (s.attributes or {}).get("meseta.task_state"))
            for s in finished
            if f"{s.context.trace_id:032x}" == t
        ]
        for t in accepted - {c.trace_id for c in found}
    }
    assert {c.trace_id for c in found} == accepted, missing
    assert {c.framework for c in found} == {"etl", "reports"}
    assert len([c for c in found if c.framework == "etl"]) <= first.stats.offers_accepted
    for cycle in found:
        assert all(ms >= 0 for ms in cycle.stages.values()), cycle
        assert 0 < cycle.total < 30_000
        # The whole cycle, straight from the raw spans: allocation -> the first RUNNING at the master.
        mine = [s for s in finished if f"{s.context.trace_id:032x}" == cycle.trace_id]
        root = next(s for s in mine if s.name == "allocator allocate")
        running = min(
            s.start_time
            for s in mine
            if s.name == "master STATUS_UPDATE" and s.attributes["meseta.task_state"] == "RUNNING"
        )
        assert cycle.total == pytest.approx((running - root.start_time) / 1e6, abs=1e-3)

    out = tmp_path / "report.json"
    plot = tmp_path / "cycles.png"
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["trace", "report", str(traces), "--json", str(out), "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    for word in ("etl", "reports", "allocate", "offer", "decide", "accept", "launch", "cycle", "p99"):
        assert word in result.output
    report = json.loads(out.read_text())
    for name in ("etl", "reports", "all"):
        figures = report["frameworks"][name]
        stage_means = sum(s["mean"] for s in figures["stages"].values())
        stage_p50s = sum(s["p50"] for s in figures["stages"].values())
        cycle = figures["cycle"]
        assert cycle["count"] == len(found) if name == "all" else cycle["count"] < len(found)
        # Means of the stages add up to the mean cycle (medians need not add up: reported, not checked).
        assert stage_means == pytest.approx(cycle["mean"], rel=0.10)
        print(name, f"stage p50 sum {stage_p50s:.2f} ms, cycle p50 {cycle['p50']:.2f} ms")
        assert cycle["p50"] <= cycle["p95"] <= cycle["p99"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
