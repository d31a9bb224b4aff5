"""Prometheus's /metrics, /health and /ready on the master, the allocator and an agent."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from meseta.master import MasterService
from meseta.testing.local import local_cluster, run_one, short_task

pytestmark = pytest.mark.e2e

DASHBOARD = Path(__file__).parents[3] / "compose" / "grafana" / "meseta-dashboard.json"

COMMON = {
    "meseta_broker_connected",
    "meseta_broker_reconnects",
    "meseta_broker_publish_seconds",
    "meseta_event_loop_lag_seconds",
    "meseta_gc_pause_seconds",
}
MASTER = COMMON | {
    "meseta_master_leading",
    "meseta_master_epoch",
    "meseta_offers",
    "meseta_offer_round_trip_seconds",
    "meseta_tasks",
    "meseta_framework_tasks",
    "meseta_agents",
    "meseta_framework_share",
    "meseta_frameworks",
    "meseta_offers_outstanding",
}
ALLOCATOR = COMMON | {
    "meseta_allocator_leading",
    "meseta_allocator_policy",
    "meseta_allocation_cycle_seconds",
    "meseta_allocation_cycles",
    "meseta_allocation_grants",
    "meseta_allocator_agents",
    "meseta_allocator_frameworks",
}
AGENT = COMMON | {
    "meseta_agent_tasks",
    "meseta_agent_framework_tasks",
    "meseta_agent_resources",
    "meseta_agent_unacknowledged_updates",
    "meseta_agent_updates_resent",
}


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


async def get(url: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(_get, url)


async def scrape(base: str) -> dict[str, list[Sample]]:
    """Every family of ``base``/metrics, parsed by prometheus-client's own parser."""
    status, content_type, text = await get(base + "/metrics")
    assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


async def test_every_service_serves_its_metrics_health_and_readiness(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        master = cluster.master.api_url
        assert master is not None
        allocator = f"http://127.0.0.1:{cluster.allocator.probes.port}"
        agent = f"http://127.0.0.1:{cluster.agents[0].probes.port}"
        # Present from the start, zero where nothing happened yet.
        families = await scrape(master)
        assert MASTER <= families.keys(), MASTER - families.keys()
        assert value(families["meseta_offers"], "meseta_offers_total", outcome="accepted") == 0
        assert (
            value(
                families["meseta_offer_round_trip_seconds"],
                "meseta_offer_round_trip_seconds_count",
                decision="accept",
            )
            == 0
        )
        assert value(families["meseta_agents"], "meseta_agents", state="ACTIVE") == 1
        assert value(families["meseta_agents"], "meseta_agents", state="DRAINED") == 0
        assert value(families["meseta_tasks"], "meseta_tasks", state="RUNNING") == 0
        assert value(families["meseta_master_leading"], "meseta_master_leading") == 1
        # Sample names (a histogram's _bucket, a counter's _total) and family names (a gauge by framework
        # has no sample before a framework subscribes).
        served = set(families) | {sample.name for samples in families.values() for sample in samples}
        for base, expected in ((allocator, ALLOCATOR), (agent, AGENT)):
            families = await scrape(base)
            assert expected <= families.keys(), (base, expected - families.keys())
            served |= set(families) | {sample.name for samples in families.values() for sample in samples}
        # The Grafana dashboard shipped in compose/ asks only for series that exist.
        exprs = [t["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for t in panel["targets"]]
        wanted = {name for expr in exprs for name in re.findall(r"meseta_[a-z_]+", expr)}
        assert wanted and wanted <= served, wanted - served
        # A real offer cycle shows in the master's histogram and the allocator's counters.
        client = await cluster.framework("measured")
        status = await run_one(client, short_task("m-1", script="true"))
        assert status.state.value == "FINISHED"
        families = await scrape(master)
        assert value(families["meseta_offers"], "meseta_offers_total", outcome="accepted") == 1
        assert (
            value(
                families["meseta_offer_round_trip_seconds"],
                "meseta_offer_round_trip_seconds_count",
                decision="accept",
            )
            == 1
        )
        assert value(families["meseta_broker_publish_seconds"], "meseta_broker_publish_seconds_count") > 0
        families = await scrape(allocator)
        assert value(families["meseta_allocation_grants"], "meseta_allocation_grants_total") >= 1
        assert (
            value(families["meseta_allocation_cycle_seconds"], "meseta_allocation_cycle_seconds_count") >= 1
        )
        # Health and readiness.
        for base in (master, allocator, agent):
            status_code, _, body = await get(base + "/health")
            assert status_code == 200 and json.loads(body)["alive"] is True
            status_code, _, body = await get(base + "/ready")
            assert status_code == 200 and json.loads(body)["ready"] is True, body
        assert json.loads((await get(master + "/ready"))[2])["role"] == "leader"
        standby = MasterService(replace(cluster.master.settings, name="standby-metrics"))
        await standby.start()
        try:
            assert standby.api_url is not None
            status_code, _, body = await get(standby.api_url + "/ready")
            assert status_code == 200 and json.loads(body)["role"] == "standby", body
            families = await scrape(standby.api_url)
            assert value(families["meseta_master_leading"], "meseta_master_leading") == 0
        finally:
            await standby.stop()
        # An agent that lost its broker link is alive, and not ready.
        await cluster.agents[0].bus.close()
        status_code, _, body = await get(agent + "/ready")
        assert status_code == 503 and json.loads(body)["broker"] is False, body
        assert (await get(agent + "/health"))[0] == 200
