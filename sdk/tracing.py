"""OpenTelemetry set-up and W3C trace-context propagation through AMQP headers.

Handlers hold no tracing code: :mod:`meseta.sdk.bus` injects the current context into every published
message and opens a consumer span, child of the sender's, around every handled one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

log = logging.getLogger(__name__)

TRACER_PREFIX = "meseta."
"""Each service's tracer is named ``meseta.<service>``; a trace's scopes tell which services it crossed."""


def tracer(service: str) -> trace.Tracer:
    """The tracer of one service (``master``, ``allocator``, ``agent``, ``framework``)."""
    return trace.get_tracer(TRACER_PREFIX + service)


def configure(
    service: str, exporter: str = "none", endpoint: str | None = None, metric_interval: float = 5.0
) -> None:
    """Install global tracer and meter providers for a service process.

    Args:
        service: the ``service.name`` resource attribute.
        exporter: ``none`` (spans and metrics are made but not exported), ``console`` (spans only) or
            ``otlp`` (spans and metrics, OTLP over HTTP).
        endpoint: the collector's OTLP/HTTP base URL, such as ``http://127.0.0.1:4318``; spans go to
            ``/v1/traces`` and metrics to ``/v1/metrics`` under it.
        metric_interval: seconds between metric exports.
    """
    resource = Resource.create({"service.name": f"meseta-{service}"})
    provider = TracerProvider(resource=resource)
    span_exporter: SpanExporter | None = None
    readers: list[MetricReader] = []
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = (endpoint or "http://127.0.0.1:4318").removesuffix("/v1/traces").rstrip("/")
        span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces")
        readers.append(
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"{base}/v1/metrics"),
                export_interval_millis=metric_interval * 1e3,
            )
        )
    elif exporter != "none":
        raise ValueError(f"unknown trace exporter {exporter!r}: use none, console or otlp")
    if span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def inject(headers: dict[str, Any], context: otel_context.Context | None = None) -> dict[str, Any]:
    """Write the (given or current) trace context into AMQP headers."""
    propagate.inject(headers, context=context)
    return headers


def extract(headers: Mapping[str, Any] | None) -> otel_context.Context:
    """Read a trace context from AMQP headers; an empty context where there is none."""
    carrier = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (headers or {}).items()}
    return propagate.extract(carrier)
