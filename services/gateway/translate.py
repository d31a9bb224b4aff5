"""Mesos v1 JSON to Meseta's wire models and back: pure functions, no I/O.

Mesos wraps ids as ``{"value": ...}``, lists resources by name and type (SCALAR cpus/mem/disk/gpus,
RANGES ports), prefixes states with ``TASK_`` and reasons with ``REASON_``, and carries a status update's
uuid as base64 bytes. The references are Mesos's ``scheduler-http-api`` docs and ``mesos/v1/mesos.proto``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import ValidationError

from meseta.sdk import wire
from meseta.sdk.wire.codec import first_reason

Json = dict[str, Any]

VERSION = "1.11.0"
"""The Mesos version the gateway answers as (pymesos adds GPU_RESOURCES from 1.0 on)."""


class Invalid(ValueError):
    """Mesos input the gateway cannot translate; the text says what and where."""


def wrap(value: str) -> Json:
    return {"value": value}


def unwrap(obj: Any, what: str) -> str:
    """The ``value`` of a Mesos id (``{"value": "x"}``)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("value"), str) or not obj["value"]:
        raise Invalid(f"{what} must be {{'value': <non-empty string>}}, got {obj!r:.80}")
    return str(obj["value"])


# --- to Mesos --------------------------------------------------------------------------------------------


def resources(res: wire.Resources, role: str) -> list[Json]:
    """Meseta resources as Mesos's resource list (zero quantities left out, as Mesos does)."""

    def scalar(name: str, value: float) -> Json:
        return {
            "name": name,
            "type": "SCALAR",
            "scalar": {"value": value},
            "role": role,
            "allocation_info": {"role": role},
        }

    out = [scalar(n, float(v)) for n, v in (("cpus", res.cpus), ("mem", res.mem), ("disk", res.disk)) if v]
    if res.gpus:
        out.append(scalar("gpus", float(res.gpus)))
    if res.ports:
        ranges = [{"begin": r.begin, "end": r.end} for r in res.ports]
        out.append(
            {
                "name": "ports",
                "type": "RANGES",
                "ranges": {"range": ranges},
                "role": role,
                "allocation_info": {"role": role},
            }
        )
    return out


def offer(o: wire.Offer, role: str) -> Json:
    return {
        "id": wrap(o.offer_id),
        "framework_id": wrap(o.framework_id),
        "agent_id": wrap(o.agent_id),
        "hostname": o.hostname,
        "resources": resources(o.resources, role),
        "attributes": [{"name": k, "type": "TEXT", "text": {"value": v}} for k, v in o.attributes.items()],
        "allocation_info": {"role": role},
    }


_REASONS: dict[wire.StatusReason, str] = {
    wire.StatusReason.CONTAINER_LAUNCH_FAILED: "REASON_CONTAINER_LAUNCH_FAILED",
    wire.StatusReason.IMAGE_PULL_FAILED: "REASON_CONTAINER_LAUNCH_FAILED",
    wire.StatusReason.TOO_MANY_UNACKNOWLEDGED: "REASON_CONTAINER_LAUNCH_FAILED",
    wire.StatusReason.LAUNCH_LOST: "REASON_CONTAINER_LAUNCH_FAILED",
    wire.StatusReason.INVALID_TASK: "REASON_TASK_INVALID",
    wire.StatusReason.UNKNOWN_TASK: "REASON_TASK_UNKNOWN",
    wire.StatusReason.AGENT_REMOVED: "REASON_AGENT_REMOVED",
    wire.StatusReason.FRAMEWORK_REMOVED: "REASON_FRAMEWORK_REMOVED",
    wire.StatusReason.REVOKED: "REASON_CONTAINER_PREEMPTED",
    wire.StatusReason.RECONCILIATION: "REASON_RECONCILIATION",
    wire.StatusReason.OOM_KILLED: "REASON_CONTAINER_LIMITATION_MEMORY",
    wire.StatusReason.EXECUTOR_TERMINATED: "REASON_EXECUTOR_TERMINATED",
    wire.StatusReason.INVALID_OFFERS: "REASON_INVALID_OFFERS",
    wire.StatusReason.HEALTH_CHANGED: "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
    wire.StatusReason.HEALTH_CHECK_FAILED: "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
    wire.StatusReason.READY: "REASON_TASK_CHECK_STATUS_UPDATED",
    wire.StatusReason.AGENT_UNREACHABLE: "REASON_AGENT_DISCONNECTED",
    wire.StatusReason.AGENT_REREGISTERED: "REASON_AGENT_REREGISTERED",
}
"""Meseta's reasons that have a Mesos counterpart; the others (a framework's or operator's kill, a
finished container, a pull in progress, a drain) go without a reason, their message says it."""

_MASTER_REASONS = frozenset(
    {
        wire.StatusReason.INVALID_OFFERS,
        wire.StatusReason.INVALID_TASK,
        wire.StatusReason.RECONCILIATION,
        wire.StatusReason.AGENT_REMOVED,
        wire.StatusReason.AGENT_UNREACHABLE,
        wire.StatusReason.FRAMEWORK_REMOVED,
        wire.StatusReason.LAUNCH_LOST,
    }
)


def from_master(status: wire.TaskStatus) -> bool:
    """Whether the master (not an agent) made this update: Mesos gives such updates no uuid, and the
    framework acknowledges none of them."""
    return status.agent_id is None or status.reason in _MASTER_REASONS


def uuid_to_mesos(uuid: str) -> str:
    return base64.b64encode(uuid.encode()).decode()


def uuid_from_mesos(text: str) -> str:
    try:
        return base64.b64decode(text.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Invalid(f"uuid {text!r:.60} is not one this gateway sent (base64)") from None


def status(s: wire.TaskStatus) -> Json:
    """A Meseta status update as Mesos's TaskStatus."""
    out: Json = {
        "task_id": wrap(s.task_id),
        "state": f"TASK_{s.state.value}",
        "source": "SOURCE_MASTER" if from_master(s) else "SOURCE_EXECUTOR",
        "timestamp": s.timestamp,
    }
    if s.agent_id is not None:
        out["agent_id"] = wrap(s.agent_id)
    if s.message:
        out["message"] = s.message
    if s.reason is not None and s.reason in _REASONS:
        out["reason"] = _REASONS[s.reason]
    if s.healthy is not None:
        out["healthy"] = s.healthy
    if not from_master(s):
        out["uuid"] = uuid_to_mesos(s.uuid)
    return out


def gateway_status(task_id: str, state: str, reason: str, message: str) -> Json:
    """An update the gateway itself makes (a task it could not translate): no uuid, nothing to ack."""
    return {
        "task_id": wrap(task_id),
        "state": state,
        "reason": reason,
        "source": "SOURCE_MASTER",
        "message": message,
    }


def event(kind: str, body: Json | None = None) -> Json:
    """A Mesos event: ``{"type": "UPDATE", "update": {...}}``."""
    return {"type": kind} if body is None else {"type": kind, kind.lower(): body}


# --- from Mesos ------------------------------------------------------------------------------------------


def _scalar(r: Json, name: str) -> float:
    if r.get("type", "SCALAR") != "SCALAR" or not isinstance(r.get("scalar"), dict):
        raise Invalid(f"resource {name} must be SCALAR")
    value = r["scalar"].get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise Invalid(f"resource {name} needs a number >= 0, got {value!r:.40}")
    return float(value)


def task_resources(listed: Any) -> wire.Resources:
    """Mesos's resource list as Meseta resources: cpus, mem, disk, gpus (SCALAR) and ports (RANGES)."""
    if not isinstance(listed, list):
        raise Invalid("resources must be a list")
    totals: dict[str, float] = {}
    ports: list[wire.PortRange] = []
    for r in listed:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            raise Invalid("each resource needs a name")
        name = r["name"]
        if name in ("cpus", "mem", "disk", "gpus"):
            totals[name] = totals.get(name, 0.0) + _scalar(r, name)
        elif name == "ports":
            got = r.get("ranges", {}).get("range") if isinstance(r.get("ranges"), dict) else None
            if r.get("type") != "RANGES" or not isinstance(got, list):
                raise Invalid("resource ports must be RANGES")
            for span in got:
                try:
                    ports.append(wire.PortRange(begin=span["begin"], end=span["end"]))
                except (TypeError, KeyError, ValidationError):
                    raise Invalid(f"bad port range {span!r:.60}") from None
        else:
            raise Invalid(f"resource {name!r} is not one Meseta offers (cpus, mem, disk, gpus, ports)")
    gpus = totals.get("gpus", 0.0)
    if gpus != int(gpus):
        raise Invalid("gpus must be a whole number")
    try:
        return wire.Resources(
            cpus=totals.get("cpus", 0.0),
            mem=totals.get("mem", 0.0),
            disk=totals.get("disk", 0.0),
            gpus=int(gpus),
            ports=tuple(ports),
        )
    except ValidationError as exc:
        raise Invalid(f"resources: {first_reason(exc)}") from None


def seconds(obj: Any) -> float | None:
    """A Mesos DurationInfo (``{"nanoseconds": n}``) in seconds."""
    if not isinstance(obj, dict):
        return None
    nanos = obj.get("nanoseconds")
    return float(nanos) / 1e9 if isinstance(nanos, int | float) else None


def _health_check(hc: Any) -> wire.HealthCheck:
    if not isinstance(hc, dict):
        raise Invalid("health_check must be an object")
    kind = str(hc.get("type", "")).upper()
    common: Json = {
        k: hc[k]
        for k in ("delay_seconds", "interval_seconds", "timeout_seconds", "grace_period_seconds")
        if k in hc
    }
    if "consecutive_failures" in hc:
        common["max_consecutive_failures"] = hc["consecutive_failures"]
    try:
        if kind == "COMMAND":
            command = hc.get("command", {})
            value = command.get("value", "") if isinstance(command, dict) else ""
            if command.get("shell", True) is False:
                listed = command.get("arguments")
                argv = tuple(str(a) for a in listed) if isinstance(listed, list) and listed else (str(value),)
            else:
                argv = ("sh", "-c", value)
            return wire.HealthCheck(kind="command", command=argv, **common)
        if kind in ("HTTP", "TCP"):
            spec = hc.get(kind.lower(), {})
            port = spec.get("port") if isinstance(spec, dict) else None
            if kind == "HTTP":
                return wire.HealthCheck(kind="http", port=port, path=spec.get("path", "/"), **common)
            return wire.HealthCheck(kind="tcp", port=port, **common)
    except (ValidationError, TypeError, AttributeError) as exc:
        text = first_reason(exc) if isinstance(exc, ValidationError) else str(exc)
        raise Invalid(f"health_check: {text}") from None
    raise Invalid(f"health_check type {kind or '(none)'} is not supported (COMMAND, HTTP, TCP)")


def _container(task: Json, default_image: str) -> wire.ContainerSpec:
    command = task.get("command")
    if not isinstance(command, dict):
        raise Invalid("a task needs a command (custom executors are not supported)")
    value = command.get("value", "")
    env = {}
    variables = get(command, "environment", "variables") or []
    for var in variables if isinstance(variables, list) else ():
        if isinstance(var, dict) and isinstance(var.get("name"), str):
            env[var["name"]] = str(var.get("value", ""))
    if command.get("shell", True) is not False:
        argv: tuple[str, ...] = ("sh", "-c", str(value))
        arguments: tuple[str, ...] = ()
    else:
        # Mesos's arguments include argv[0]; Meseta's command is argv[0] and its arguments the rest.
        argv = (str(value),)
        listed = command.get("arguments")
        arguments = tuple(str(a) for a in listed[1:]) if isinstance(listed, list) else ()
    image: Any = default_image
    pull: Literal["if-missing", "always"] = "if-missing"
    container = task.get("container")
    if isinstance(container, dict):
        kind = container.get("type", "MESOS")
        if kind == "DOCKER":
            image = get(container, "docker", "image")
            if get(container, "docker", "force_pull_image") is True:
                pull = "always"
        elif kind == "MESOS":
            image = get(container, "mesos", "image", "docker", "name") or default_image
        else:
            raise Invalid(f"container type {kind!r} is not supported (DOCKER, MESOS)")
        if not isinstance(image, str) or not image:
            raise Invalid("container.docker.image must name an image")
    try:
        return wire.ContainerSpec(image=image, command=argv, arguments=arguments, env=env, pull=pull)
    except ValidationError as exc:
        raise Invalid(f"command: {first_reason(exc)}") from None


def task(t: Any, default_image: str) -> wire.TaskInfo:
    """A Mesos TaskInfo (LAUNCH's ``task_infos``) as Meseta's. Not supported: custom executors,
    task groups, volumes, labels and discovery info (ignored), and any resource Meseta does not offer."""
    if not isinstance(t, dict):
        raise Invalid("a task must be an object")
    task_id = unwrap(t.get("task_id"), "task_id")
    if t.get("executor") is not None:
        raise Invalid("custom executors are not supported through the gateway")
    res = task_resources(t.get("resources", []))
    grace = seconds(get(t, "kill_policy", "grace_period"))
    try:
        return wire.TaskInfo(
            task_id=task_id,
            name=str(t.get("name", ""))[:256],
            resources=res,
            container=_container(t, default_image),
            kill_grace_seconds=grace,
            health_check=_health_check(t["health_check"]) if t.get("health_check") is not None else None,
        )
    except ValidationError as exc:
        raise Invalid(f"task {task_id}: {first_reason(exc)}") from None


def task_id_of(t: Any) -> str | None:
    """A task's id, where it has a readable one (to report a task that could not be translated)."""
    try:
        return unwrap(t.get("task_id"), "task_id") if isinstance(t, dict) else None
    except Invalid:
        return None


def refuse_seconds(filters: Any, default: float) -> float:
    if isinstance(filters, dict) and isinstance(filters.get("refuse_seconds"), int | float):
        return max(0.0, min(float(filters["refuse_seconds"]), wire.MAX_SECONDS))
    return default


def get(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...``, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
