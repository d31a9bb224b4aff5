"""The operator's HTTP API on the master: drain and undrain agents, maintenance windows, kill a task, tear
down a framework, switch the policy, set a role's weight and quota.

Every call needs the operator credential (``Authorization: Bearer <token>``: 401 without one, 403 with a
wrong one, or where this master was given none). Only the leader acts; a standby answers 307 to the
leader's API (503 while it does not know it). Bodies are JSON, checked before anything is done (400 with
the reason).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from meseta.master import draining
from meseta.master.agents import mark_gone
from meseta.master.cluster import Window
from meseta.master.core import MasterCore
from meseta.master.frameworks import remove_framework
from meseta.master.operator import kill_as_operator, live_task_keys
from meseta.sdk import wire
from meseta.sdk.wire.codec import first_reason

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_SECONDS = 365 * 86400.0


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DrainBody(_Body):
    deadline_seconds: float = Field(default=300.0, ge=0, le=MAX_SECONDS)
    """Seconds the agent's tasks have before they are killed (AGENT_DRAINED)."""


class WindowBody(_Body):
    agent_ids: list[wire.Id] = Field(min_length=1, max_length=10_000)
    start: float = Field(ge=0)
    """Wall-clock time (Unix seconds) the window starts."""
    duration_seconds: float = Field(gt=0, le=MAX_SECONDS)
    drain_seconds: float = Field(default=0.0, ge=0, le=MAX_SECONDS)
    """Seconds after the start at which the agents' remaining tasks are killed."""
    window_id: str | None = Field(default=None, pattern=wire.ID_PATTERN)


class PolicyBody(_Body):
    policy: str


class RoleBody(_Body):
    weight: float = Field(default=1.0, gt=0, le=1e6)
    quota: wire.Resources = Field(default_factory=wire.Resources)


class OperatorApi:
    """The write endpoints, added to the state API's application."""

    def __init__(
        self,
        core: Callable[[], MasterCore],
        token: str | None,
        leading: Callable[[], bool],
        leader_api: Callable[[], Awaitable[str | None]],
        write_policy: Callable[[str], Awaitable[None]],
        write_role: Callable[[str, float, wire.Resources], Awaitable[None]],
    ) -> None:
        self.core = core
        self.token = token
        self.leading = leading
        self.leader_api = leader_api
        self.write_policy = write_policy
        self.write_role = write_role

    def add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/api/v1/agents/{agent_id}/drain", self._drain),
            ("POST", "/api/v1/agents/{agent_id}/undrain", self._undrain),
            ("POST", "/api/v1/agents/{agent_id}/gone", self._gone),
            ("GET", "/api/v1/maintenance", self._windows),
            ("POST", "/api/v1/maintenance", self._schedule),
            ("DELETE", "/api/v1/maintenance/{window_id}", self._unschedule),
            ("POST", "/api/v1/tasks/{task_id}/kill", self._kill),
            ("POST", "/api/v1/frameworks/{framework_id}/teardown", self._teardown),
            ("PUT", "/api/v1/policy", self._policy),
            ("PUT", "/api/v1/roles/{role}", self._role),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._guarded(handler))

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            refusal = self._refusal(request)
            if refusal is not None:
                return refusal
            if not self.leading():
                leader = await self.leader_api()
                if leader is None:
                    return _error(503, "no master leads (or this standby does not know which): try again")
                raise web.HTTPTemporaryRedirect(leader.rstrip("/") + str(request.rel_url))
            try:
                return await handler(request)
            except ValidationError as exc:
                return _error(400, first_reason(exc, "body"))
            except ValueError as exc:  # a body that is not JSON
                return _error(400, str(exc))

        return guarded

    def _refusal(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer "):
            response = _error(401, "the operator credential is needed: Authorization: Bearer <token>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="meseta"'
            return response
        if self.token is None:
            return _error(403, "this master has no operator credential: start it with --operator-token-file")
        if not hmac.compare_digest(given.removeprefix("Bearer ").encode(), self.token.encode()):
            log.warning("operator call %s %s with a wrong credential refused", request.method, request.path)
            return _error(403, "wrong operator credential")
        return None

    async def _drain(self, request: web.Request) -> web.Response:
        body = DrainBody.model_validate(await _json(request))
        agent_id = request.match_info["agent_id"]
        m = self.core()
        if agent_id not in m.cluster.agents:
            return _error(404, f"no agent {agent_id}")
        entry = await draining.drain(m, agent_id, body.deadline_seconds)
        return _agent(m, agent_id, entry.deadline)

    async def _undrain(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["agent_id"]
        m = self.core()
        if not await draining.undrain(m, agent_id):
            return _error(404, f"agent {agent_id} is not drained")
        return _agent(m, agent_id, None)

    async def _gone(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["agent_id"]
        if not await mark_gone(self.core(), agent_id):
            return _error(404, f"no agent {agent_id} (registered or lost)")
        return web.json_response({"agent_id": agent_id, "state": "GONE"})

    async def _windows(self, _: web.Request) -> web.Response:
        windows = sorted(self.core().cluster.maintenance.values(), key=lambda w: (w.start, w.window_id))
        return web.json_response([w.as_json() for w in windows])

    async def _schedule(self, request: web.Request) -> web.Response:
        body = WindowBody.model_validate(await _json(request))
        window = Window(
            window_id=body.window_id or f"maintenance-{uuid.uuid4().hex[:12]}",
            agent_ids=tuple(dict.fromkeys(body.agent_ids)),
            start=body.start,
            end=body.start + body.duration_seconds,
            drain_seconds=body.drain_seconds,
        )
        await draining.schedule(self.core(), window)
        return web.json_response(window.as_json(), status=201)

    async def _unschedule(self, request: web.Request) -> web.Response:
        window_id = request.match_info["window_id"]
        if not await draining.unschedule(self.core(), window_id):
            return _error(404, f"no maintenance window {window_id}")
        return web.json_response({"window_id": window_id, "cancelled": True})

    async def _kill(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        framework_id = request.query.get("framework_id")
        m = self.core()
        keys = live_task_keys(m, task_id, framework_id)
        if not keys:
            return _error(404, f"no live task {task_id}")
        if len(keys) > 1:
            return _error(409, f"task id {task_id} is used by several frameworks: give ?framework_id=")
        task = await kill_as_operator(m, keys[0])
        body = {"task_id": task.task_id, "framework_id": task.framework_id, "agent_id": task.agent_id}
        return web.json_response({**body, "state": "KILLING"}, status=202)

    async def _teardown(self, request: web.Request) -> web.Response:
        framework_id = request.match_info["framework_id"]
        m = self.core()
        fw = m.cluster.frameworks.get(framework_id)
        if fw is None:
            return _error(404, f"no framework {framework_id}")
        log.warning("operator tears down framework %s (%s)", framework_id, fw.name)
        await remove_framework(m, fw)
        return web.json_response({"framework_id": framework_id, "removed": True})

    async def _policy(self, request: web.Request) -> web.Response:
        from meseta.allocator.policy import POLICIES

        body = PolicyBody.model_validate(await _json(request))
        if body.policy not in POLICIES:
            return _error(400, f"unknown policy {body.policy!r}; known: {', '.join(sorted(POLICIES))}")
        await self.write_policy(body.policy)
        return web.json_response({"policy": body.policy})

    async def _role(self, request: web.Request) -> web.Response:
        body = RoleBody.model_validate(await _json(request))
        role = request.match_info["role"]
        if not wire.is_valid_id(role):
            return _error(400, f"invalid role {role!r}")
        await self.write_role(role, body.weight, body.quota)
        return web.json_response({"role": role, "weight": body.weight, "quota": body.quota.model_dump()})


def _agent(m: MasterCore, agent_id: str, deadline: float | None) -> web.Response:
    state = draining.state_of(m.cluster, agent_id)
    body = {"agent_id": agent_id, "state": state, "deadline": deadline, "time": time.time()}
    return web.json_response(body)


async def _json(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
