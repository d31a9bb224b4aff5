"""Shared fixtures: real RabbitMQ (a vhost per test), real etcd (a prefix per test), real dockerd.

Spans go to an in-memory exporter installed once per process and emptied before every test.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import docker
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meseta.runtime.etcd import EtcdStore
from meseta.runtime.rabbitmq import Management
from meseta.sdk import eventloop

AMQP_HOST = "127.0.0.1:5672"
MANAGEMENT = Management()
ETCD = "127.0.0.1:2379"
TASK_IMAGE = "meseta-task:latest"

REPORT_SHARE = 0.05
"""Share of an async test's limit kept back for reporting its failure, before pytest-timeout's alarm."""
REPORT_MIN_S = 2.0
"""At least this long: on a loaded machine, cancelling and reporting a hung 2 s probe outlasted the 0.1 s
that a 95 % share left it (CI, 2026-11-24)."""

_EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_provider)
METRICS = InMemoryMetricReader()
"""Every service's metrics in this test process (read with ``METRICS.get_metrics_data()``)."""
metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS]))


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on the event loop the services run on (uvloop's: ``meseta.sdk.eventloop``)."""
    return {"loop": eventloop.loop_factory()}


_ALARM = pytest.StashKey[tuple[float, float]]()


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """Keep the limit pytest-timeout worked out for the item (marker, option, ini or environment),
    and when its timer starts: before set-up, unless the limit is ``func_only``.

    Returns nothing, so pytest-timeout goes on to set its own timer.
    """
    item.stash[_ALARM] = (time.monotonic(), settings.timeout)


def _report_margin(limit: float) -> float:
    return min(max(limit * REPORT_SHARE, REPORT_MIN_S), limit / 2)


# Inside pytest-timeout's own wrapper (trylast), so that even a func_only limit is known here.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """An async test's time limit, kept inside its event loop.

    pytest-timeout raises from a SIGALRM handler; uvloop runs Python signal handlers inside its own
    callbacks and only logs what they raise, so under uvloop that limit never ended a test (a hung
    fault test ran over 20 minutes under a 400 s limit). Cancelling the test at the deadline fails it
    with its stack and lets its clusters stop; pytest-timeout stays as the backstop for everything else.
    """
    alarm = item.stash.get(_ALARM, None)
    test = getattr(item, "obj", None)
    if alarm is None or not inspect.iscoroutinefunction(test):
        return (yield)
    started, limit = alarm
    margin = _report_margin(limit)

    @functools.wraps(test)
    async def bounded(*args: object, **kwargs: object) -> object:
        # The alarm counts from before set-up; the failure must be reported before it fires, since
        # pytest-timeout's exception raised inside pytest's reporting is an INTERNALERROR that ends the run.
        deadline = asyncio.timeout(max(started + limit - margin - time.monotonic(), 0.0))
        try:
            async with deadline:
                return await test(*args, **kwargs)
        except TimeoutError as exc:
            if deadline.expired():
                raise TimeoutError(
                    f"the test ran into its time limit ({limit:g} s, less {margin:g} s kept to report it)"
                ) from exc
            raise

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(item, "obj", bounded)
        return (yield)


def _ready(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check()  # type: ignore[operator]
            return
        except Exception as exc:
            last = exc
            time.sleep(0.5)
    pytest.exit(f"{what} is not ready ({last}); run `make test` or `bash scripts/infra.sh` first", 3)


@pytest.fixture(scope="session")
def infrastructure() -> None:
    """RabbitMQ (management API), etcd, dockerd and the task image, checked once per session."""
    _ready(lambda: MANAGEMENT.call("GET", "/overview"), "RabbitMQ")
    _ready(lambda: urllib.request.urlopen(f"http://{ETCD}/health", timeout=5).read(), "etcd")
    client = docker.from_env()
    _ready(client.ping, "dockerd")
    _ready(lambda: client.images.get(TASK_IMAGE), f"the task image {TASK_IMAGE}")
    client.close()


@pytest.fixture
def amqp_url(infrastructure: None) -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test, deleted afterwards."""
    name = f"meseta-test-{uuid.uuid4().hex[:12]}"
    MANAGEMENT.create_vhost(name)
    yield f"amqp://guest:guest@{AMQP_HOST}/{name}"
    MANAGEMENT.delete_vhost(name)


@pytest.fixture
async def etcd_prefix(infrastructure: None) -> AsyncIterator[str]:
    """A fresh etcd key prefix for this test, emptied afterwards."""
    prefix = f"/meseta-test/{uuid.uuid4().hex[:12]}"
    yield prefix
    store = EtcdStore(ETCD, prefix)
    await store.connect()
    await store.delete_prefix()
    await store.close()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The in-memory span exporter, emptied for this test."""
    _EXPORTER.clear()
    return _EXPORTER


async def wait_for(predicate: object, timeout: float = 20.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` is true, polling; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
