"""The master's state API over HTTP, its OpenAPI description and the live web page (the operator's write
endpoints are meseta.master.operator_api's, served beside it).

Every master serves it; only the leader has the cluster's state, so a standby answers 503 with
who it is (a load balancer or the CLI moves on to the next master).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from meseta.master import views
from meseta.master.activity import Activity
from meseta.master.cluster import Cluster
from meseta.master.events import OVERFLOW
from meseta.master.operator_api import OperatorApi
from meseta.runtime.prometheus import Probes

log = logging.getLogger(__name__)

CACHE_SECONDS = 0.5
KEEPALIVE = 15.0
"""Seconds between comment lines on a quiet event stream."""


class StateApi:
    """An aiohttp application over the master's state."""

    def __init__(
        self,
        cluster: Cluster,
        activity: Activity,
        leader: Callable[[], views.LeaderView],
        starvation_after: float,
        operator: OperatorApi | None = None,
        probes: Probes | None = None,
    ) -> None:
        self.operator = operator
        self.probes = probes
        """/metrics, /health and /ready (meseta.runtime.prometheus), where the service gives them."""
        """The write endpoints (meseta.master.operator_api), where the service gives them."""
        self.cluster = cluster
        self.activity = activity
        self.leader = leader
        self.starvation_after = starvation_after
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        """The bound port, once started."""
        self._page = resources.files("meseta.master").joinpath("page.html").read_text()
        self._cache: dict[str, tuple[float, Any]] = {}
        """Document name -> (when rendered, the document)."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/api/v1/leader", self._leader)
        app.router.add_get("/api/v1/events", self._events)
        for path in views.ROUTES:
            if path != "/api/v1/leader":
                app.router.add_get(path, self._document)
        if self.operator is not None:
            self.operator.add_routes(app)
        if self.probes is not None:
            self.probes.add_routes(app)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("state API on http://%s:%d/", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _rendered(self, name: str) -> Any:
        """One document, rendered at most once per ``CACHE_SECONDS``: rendering a large cluster takes the
        event loop for a while, and pollers (pages, CLIs) must not multiply that. A section renders
        alone: at 10,000 agents the whole state took the loop for over a second, the cycles a few ms."""
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is None or now - cached[0] > CACHE_SECONDS:
            cached = self._cache[name] = (now, self._render(name))
        return cached[1]

    def _render(self, name: str) -> Any:
        now = time.time()
        match name:
            case "agents":
                return views.agents(self.cluster, now)
            case "frameworks":
                return views.frameworks(self.cluster, now, self.starvation_after)
            case "tasks":
                return views.tasks(self.cluster)
            case "offers":
                return views.offers(self.cluster, now)
            case "cycles":
                return views.cycles(self.activity)
            case "history":
                return views.history(self.activity)
        return views.state(self.cluster, self.activity, self.leader(), self.starvation_after)

    async def _index(self, _: web.Request) -> web.Response:
        return web.Response(text=self._page, content_type="text/html")

    async def _openapi(self, _: web.Request) -> web.Response:
        return web.json_response(views.openapi())

    async def _leader(self, _: web.Request) -> web.Response:
        return _json(self.leader())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events (``event: TYPE``, ``data: JSON``) from now on; a comment line every
        ``KEEPALIVE`` seconds keeps proxies from closing a quiet stream. A standby answers 503."""
        leader = self.leader()
        if not leader.leading:
            return _json(leader, status=503)
        queue = self.cluster.events.subscribe()
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n: meseta events\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                data = json.dumps(event, separators=(",", ":"))
                await response.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
                if event["type"] == OVERFLOW:
                    break
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self.cluster.events.unsubscribe(queue)
        return response

    async def _document(self, request: web.Request) -> web.Response:
        leader = self.leader()
        if not leader.leading:
            return _json(leader, status=503)
        name = request.path.rsplit("/", 1)[1]
        document = self._rendered(name)
        if name == "state":
            return _json(document)
        return web.Response(body=TypeAdapter(list[Any]).dump_json(document), content_type="application/json")


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(body=model.model_dump_json(), status=status, content_type="application/json")
