"""Shared fixtures: real RabbitMQ (a vhost per test), real etcd (a prefix per test), real dockerd.

Async tests' time limits are kept inside their event loop by the plugin ``tests/time_limits.py``.

Spans go to an in-memory exporter installed once per process and emptied before every test.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import docker
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meseta.runtime import defaults
from meseta.runtime.etcd import EtcdStore
from meseta.runtime.rabbitmq import Management
from meseta.sdk import eventloop
from meseta.testing.vhosts import create_scratch_vhost

AMQP_HOST = "127.0.0.1:5672"
MANAGEMENT = Management()
ETCD = defaults.ETCD_ENDPOINT
TASK_IMAGE = defaults.TASK_IMAGE

pytest_plugins = ["tests.time_limits"]

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


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Each test leaves the root logger as it found it. A command run in-process (CliRunner) configures
    logging to the stderr it was given, which is closed when it returns: a later test in the same worker
    then logged to a closed file, and the SDK handler that logged it failed (a drain notice lost, seen)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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
    create_scratch_vhost(MANAGEMENT, name)  # deleted by a later run if this one is killed
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
