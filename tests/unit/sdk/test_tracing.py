"""Trace-context propagation through AMQP headers: the fast path agrees with OpenTelemetry's own. A
service that exports no span makes none."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider

from meseta.sdk import tracing

TRACER = TracerProvider().get_tracer("test")


@pytest.fixture
def span() -> Iterator[trace.Span]:
    with TRACER.start_as_current_span("parent") as current:
        yield current


def test_injected_headers_equal_the_propagators(span: trace.Span) -> None:
    expected: dict[str, str] = {}
    propagate.inject(expected)
    assert tracing.inject({}) == expected
    assert expected["traceparent"].split("-")[1] == f"{span.get_span_context().trace_id:032x}"


def test_extracted_context_equals_the_propagators(span: trace.Span) -> None:
    headers = tracing.inject({"x-meseta-epoch": 3})
    ours = trace.get_current_span(tracing.extract(headers)).get_span_context()
    theirs = trace.get_current_span(propagate.extract(headers)).get_span_context()
    assert ours == theirs
    assert ours.trace_id == span.get_span_context().trace_id and ours.is_remote
    # AMQP may hand header values back as bytes.
    as_bytes = {k: v.encode() if isinstance(v, str) else v for k, v in headers.items()}
    assert trace.get_current_span(tracing.extract(as_bytes)).get_span_context() == theirs


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  # not hex
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # truncated
        "garbage",
    ],
)
def test_a_bad_traceparent_gives_what_the_propagator_gives(traceparent: str) -> None:
    headers = {"traceparent": traceparent}
    ours = trace.get_current_span(tracing.extract(headers)).get_span_context()
    assert ours == trace.get_current_span(propagate.extract(headers)).get_span_context()
    assert not ours.is_valid


def test_tracestate_and_baggage_travel(span: trace.Span) -> None:
    state = trace.TraceState([("vendor", "x1")])
    parent = trace.NonRecordingSpan(
        trace.SpanContext(
            0x4BF92F3577B34DA6A3CE929D0E0E4736, 0xF067AA0BA902B7, True, trace.TraceFlags(1), state
        )
    )
    context = baggage.set_baggage("tenant", "t1", trace.set_span_in_context(parent))
    headers = tracing.inject({}, context)
    assert headers["tracestate"] == "vendor=x1" and headers["baggage"] == "tenant=t1"
    back = tracing.extract(headers)
    assert trace.get_current_span(back).get_span_context().trace_state == state
    assert baggage.get_baggage("tenant", back) == "t1"
    without_baggage = tracing.inject({}, trace.set_span_in_context(parent))
    assert without_baggage == {"traceparent": headers["traceparent"], "tracestate": "vendor=x1"}


def test_a_spans_context_is_injected_as_the_propagators_do(span: trace.Span) -> None:
    """``inject_span`` (the master's per-update path) writes what the propagators write for that span,
    not the current one; and the current context's baggage still goes along."""
    child = TRACER.start_span("child")
    expected: dict[str, str] = {}
    propagate.inject(expected, trace.set_span_in_context(child))
    assert tracing.inject_span({}, child) == expected
    assert expected["traceparent"].split("-")[2] == f"{child.get_span_context().span_id:016x}"
    token = otel_context.attach(baggage.set_baggage("tenant", "t1"))
    try:
        with_baggage = tracing.inject_span({}, child)
    finally:
        otel_context.detach(token)
    assert with_baggage == {**expected, "baggage": "tenant=t1"}
    assert tracing.inject_span({}, trace.INVALID_SPAN) == {}


@pytest.mark.parametrize(
    ("arguments", "makes_spans"),
    [("'none'", False), ("'none', make_spans=True", True), ("'console'", True)],
)
def test_a_service_that_exports_no_span_makes_none(arguments: str, makes_spans: bool) -> None:
    # In a process of its own: the global tracer provider is set once per process.
    code = (
        "import sys\n"
        "from meseta.sdk import tracing\n"
        f"tracing.configure('master', {arguments})\n"
        "parent = tracing.extract({'traceparent': '00-' + '1' * 32 + '-' + '2' * 16 + '-01'})\n"
        "with tracing.tracer('master').start_as_current_span('master ACCEPT', context=parent) as span:\n"
        "    print(span.is_recording(), tracing.inject({})['traceparent'], file=sys.stderr)\n"
    )
    argv = [sys.executable, "-c", code]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)
    recording, traceparent = done.stderr.split()  # the console exporter has stdout
    assert recording == str(makes_spans)
    # Either way the trace goes on: the sender's own context where no span was made, the new span's else.
    assert traceparent.startswith("00-" + "1" * 32 + "-")
    assert (traceparent == "00-" + "1" * 32 + "-" + "2" * 16 + "-01") is not makes_spans
