"""Prometheus's side of every service: ``/metrics`` in its text format, ``/health`` and ``/ready``.

Each service describes its metrics as a function returning metric families, read from its state at
scrape time (nothing is counted twice, nothing costs anything between scrapes). The families every
service has (broker publish latency, event-loop lag, GC pauses, the broker link) are built here. The
master serves these routes beside its state API; the allocator and agents on a small port of their own
(``--metrics-port``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from meseta.runtime.process_stats import LoopLag, watch_gc
from meseta.sdk.bus import Bus
from meseta.sdk.histogram import Histogram

log = logging.getLogger(__name__)

Families = Callable[[], Iterable[Metric]]
Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def histogram(name: str, documentation: str, source: Histogram, **labels: str) -> HistogramMetricFamily:
    """One of our histograms as a Prometheus histogram (seconds)."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    family.add_metric(list(labels.values()), source.cumulative(), source.total)
    return family


def gauge(name: str, documentation: str, values: Mapping[Any, float], labels: Iterable[str] = ()) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def counter(name: str, documentation: str, values: Mapping[Any, float], labels: Iterable[str] = ()) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=list(labels))
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def common(bus: Bus, lag: LoopLag) -> list[Metric]:
    """What every service reports: its broker link, publish latency, loop lag, GC pauses."""
    return [
        gauge(
            "meseta_broker_connected",
            "1 while the connection to the broker is up",
            {(): float(bus.connected)},
        ),
        counter(
            "meseta_broker_reconnects",
            "Times the connection came back after losing the broker",
            {(): bus.reconnects},
        ),
        histogram(
            "meseta_broker_publish_seconds",
            "Seconds from a publish to the broker's confirm (resends across reconnects included)",
            bus.publish_latency,
        ),
        histogram("meseta_event_loop_lag_seconds", "How late the event loop ran a short sleep", lag.lag),
        histogram("meseta_gc_pause_seconds", "Garbage-collector pauses of the process", watch_gc()),
    ]


class _Families(Collector):
    def __init__(self, families: Families) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        yield from self.families()


class Probes:
    """``/health`` (the process answers), ``/ready`` (the service can do its part now) and
    ``/metrics``; added to an application, or served alone by :meth:`start`."""

    def __init__(self, service: str, ready: Readiness, families: Families) -> None:
        self.service = service
        self.ready = ready
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Families(families))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = int(self._runner.addresses[0][1])
        log.info("%s: /metrics, /health and /ready on http://%s:%d/", self.service, host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({"service": self.service, "alive": True})

    async def _ready(self, _: web.Request) -> web.Response:
        ready, details = self.ready()
        return web.json_response(
            {"service": self.service, "ready": ready, **details}, status=200 if ready else 503
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
