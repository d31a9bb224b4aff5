"""A small OTLP/HTTP collector: receives spans and metrics, appends them to JSON-lines files.

The files have the format of the OpenTelemetry Collector's file exporter (one OTLP/JSON export request
per line, trace and span ids in hex), so ``meseta trace report`` reads either. It exists because no
registry is reachable here for the collector's own image; compose can use the real one instead.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(node: Any) -> Any:
    """OTLP/JSON writes ids as hex, where protobuf's JSON mapping writes base64."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in _ID_KEYS and isinstance(v, str) else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def to_json_line(request: Message) -> str:
    """One export request as one OTLP/JSON line."""
    return json.dumps(_hex_ids(MessageToDict(request)), separators=(",", ":"))


class Collector:
    """Appends ``traces.jsonl`` and ``metrics.jsonl`` under ``out_dir``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.received = {"traces": 0, "metrics": 0}
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        return app

    async def start(self, host: str, port: int) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("collector on %s:%d writing to %s", host, self.port, self.out_dir)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        return await self._receive(request, ExportTraceServiceRequest(), "traces")

    async def _metrics(self, request: web.Request) -> web.Response:
        return await self._receive(request, ExportMetricsServiceRequest(), "metrics")

    async def _receive(self, request: web.Request, message: Message, kind: str) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            if request.content_type == "application/json":
                line = json.dumps(json.loads(body), separators=(",", ":"))
            else:
                message.ParseFromString(body)
                line = to_json_line(message)
        except (DecodeError, ValueError) as exc:
            log.warning("refused a %s export: %s", kind, exc)
            return web.Response(status=400, text=f"cannot decode the {kind} export: {exc}")
        await asyncio.to_thread(self._append, kind, line)
        self.received[kind] += 1
        return web.Response(
            body=b"{}" if request.content_type == "application/json" else b"",  # an empty export response
            content_type=request.content_type,
        )

    def _append(self, kind: str, line: str) -> None:
        with (self.out_dir / f"{kind}.jsonl").open("a") as f:
            f.write(line + "\n")
