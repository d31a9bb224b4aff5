"""OpenTelemetry set-up and W3C trace-context propagation through AMQP headers.

Handlers hold no tracing code: :mod:`meseta.sdk.bus` injects the current context into every published
message and opens a consumer span, child of the sender's, around every handled one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import baggage, metrics, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.propagators.composite import CompositePropagator
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
    service: str,
    exporter: str = "none",
    endpoint: str | None = None,
    metric_interval: float = 5.0,
    make_spans: bool = False,
) -> None:
    """Install global tracer and meter providers for a service process.

    Args:
        service: the ``service.name`` resource attribute.
        exporter: ``none`` (no span is made, unless ``make_spans``, and traces pass through whole;
            metrics are made but not exported), ``console`` (spans only) or ``otlp`` (spans and metrics,
            OTLP over HTTP).
        endpoint: the collector's OTLP/HTTP base URL, such as ``http://127.0.0.1:4318``; spans go to
            ``/v1/traces`` and metrics to ``/v1/metrics`` under it.
        metric_interval: seconds between metric exports.
        make_spans: make spans even when none is exported, for something in this process that reads
            them: JSON log lines (each handled message's own span ids), a benchmark's span processor.
    """
    # OpenTelemetry's own variables win where set: OTEL_SERVICE_NAME here, OTEL_TRACES_SAMPLER (read by the
    # tracer provider), OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_TRACES_EXPORTER (the CLI's fallbacks).
    name = os.environ.get("OTEL_SERVICE_NAME") or f"meseta-{service}"
    resource = Resource.create({"service.name": name})
    if exporter == "none" and not make_spans:
        # OpenTelemetry's no-op tracer makes no span: each span it starts is the parent's context again, so
        # what this service publishes while handling a message carries the sender's context, and a trace
        # through it stays whole (the next service's spans are children of the sender's). Spans made only
        # to be dropped cost the master an eighth of its time in a launch burst (one per status update).
        trace.set_tracer_provider(trace.NoOpTracerProvider())
        metrics.set_meter_provider(MeterProvider(resource=resource))
        return
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


def consumer_attributes(
    service: str, message_type: str, message_id: str, exchange: str | None, routing_key: str | None
) -> dict[str, str]:
    """A consumer span's attributes: Meseta's, and OpenTelemetry's messaging conventions for RabbitMQ."""
    return {
        "meseta.service": service,
        "meseta.message.type": message_type,
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "consume",
        "messaging.destination.name": exchange or "amq.default",
        "messaging.rabbitmq.destination.routing_key": routing_key or "",
        "messaging.message.id": message_id,
    }


def inject(headers: dict[str, Any], context: otel_context.Context | None = None) -> dict[str, Any]:
    """Write the (given or current) trace context into AMQP headers.

    Writes W3C ``traceparent``/``tracestate`` itself when the default propagators are in use and there is
    no baggage: the generic path cost the master a tenth of its time in a launch burst (a context per
    status update). Anything else goes through the configured propagators.
    """
    if not _default_propagation() or baggage.get_all(context):
        propagate.inject(headers, context=context)
        return headers
    return _write_traceparent(headers, trace.get_current_span(context).get_span_context())


def _write_traceparent(headers: dict[str, Any], span_context: trace.SpanContext) -> dict[str, Any]:
    """W3C ``traceparent`` (and ``tracestate``) of a valid span context; nothing for an invalid one."""
    if span_context.is_valid:
        headers[_TRACEPARENT] = (
            f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"
        )
        if span_context.trace_state:
            headers[_TRACESTATE] = span_context.trace_state.to_header()
    return headers


def inject_span(headers: dict[str, Any], span: trace.Span) -> dict[str, Any]:
    """:func:`inject` of ``span``'s context, without making a context of it first when the default
    propagators are in use (the master forwards thousands of status updates a second, each in its own
    span's trace). Baggage of the current context goes along, as it does with :func:`inject`."""
    if not _default_propagation() or baggage.get_all():
        return inject(headers, trace.set_span_in_context(span))
    return _write_traceparent(headers, span.get_span_context())


def extract(headers: Mapping[str, Any] | None) -> otel_context.Context:
    """Read a trace context from AMQP headers; an empty context where there is none."""
    if not headers:
        return otel_context.Context()
    if _default_propagation() and _BAGGAGE not in headers:
        parent = _span_context(headers.get(_TRACEPARENT), headers.get(_TRACESTATE))
        if parent is not None:
            return trace.set_span_in_context(trace.NonRecordingSpan(parent), otel_context.Context())
    carrier = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in headers.items()}
    return propagate.extract(carrier)


_TRACEPARENT, _TRACESTATE, _BAGGAGE = "traceparent", "tracestate", "baggage"
_HEX = frozenset("0123456789abcdef")


def _span_context(traceparent: object, tracestate: object) -> trace.SpanContext | None:
    """A version-00 ``traceparent`` parsed; None for anything else (the propagator then decides)."""
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode(errors="replace")
    if not isinstance(traceparent, str) or len(traceparent) != 55 or not traceparent.startswith("00-"):
        return None
    trace_hex, span_hex, flags_hex = traceparent[3:35], traceparent[36:52], traceparent[53:55]
    if (
        traceparent[35] != "-"
        or traceparent[52] != "-"
        or not _HEX.issuperset(trace_hex + span_hex + flags_hex)
    ):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    state = None
    if tracestate:
        text = tracestate.decode(errors="replace") if isinstance(tracestate, bytes) else str(tracestate)
        state = trace.TraceState.from_header([text])
    return trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(int(flags_hex, 16)), trace_state=state
    )


def _default_propagation() -> bool:
    """The global propagators are OpenTelemetry's default pair (W3C trace context and baggage)."""
    global _checked
    textmap = propagate.get_global_textmap()
    if _checked is None or _checked[0] is not textmap:
        fields = getattr(textmap, "fields", None)
        default = isinstance(textmap, CompositePropagator) and fields == {_TRACEPARENT, _TRACESTATE, _BAGGAGE}
        _checked = (textmap, default)
    return _checked[1]


_checked: tuple[object, bool] | None = None
"""The global propagator last looked at, and whether it is the default pair."""
