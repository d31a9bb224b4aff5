"""Mesos JSON to Meseta's wire models and back (meseta.gateway.translate, recordio): what is translated,
and that whatever JSON a framework sends is either translated or refused as Invalid, never another error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.gateway import recordio, translate
from meseta.gateway.translate import Invalid
from meseta.sdk import wire

TASK: dict[str, Any] = {
    "name": "web",
    "task_id": {"value": "t1"},
    "agent_id": {"value": "a1"},
    "resources": [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31001}]}},
    ],
    "command": {"value": "echo hi", "environment": {"variables": [{"name": "A", "value": "1"}]}},
    "container": {"type": "DOCKER", "docker": {"image": "busybox:1", "force_pull_image": True}},
    "kill_policy": {"grace_period": {"nanoseconds": 3_000_000_000}},
    "health_check": {"type": "HTTP", "http": {"port": 31000, "path": "/h"}, "consecutive_failures": 2},
}


def test_a_mesos_task_becomes_a_meseta_task() -> None:
    task = translate.task(TASK, "default:1")
    assert task.task_id == "t1" and task.name == "web"
    assert task.resources.cpus == 0.5 and task.resources.mem == 64
    assert task.resources.ports == (wire.PortRange(begin=31000, end=31001),)
    assert task.container.image == "busybox:1" and task.container.pull == "always"
    assert task.container.command == ("sh", "-c", "echo hi") and task.container.env == {"A": "1"}
    assert task.kill_grace_seconds == 3.0
    assert task.health_check is not None and task.health_check.kind == "http"
    assert task.health_check.path == "/h" and task.health_check.max_consecutive_failures == 2
    # No container: the default image; shell false: argv[0] is the value, arguments after the first.
    bare = {
        **TASK,
        "container": None,
        "command": {"shell": False, "value": "/bin/echo", "arguments": ["echo", "x"]},
    }
    task = translate.task(bare, "default:1")
    assert task.container.image == "default:1"
    assert task.container.command == ("/bin/echo",) and task.container.arguments == ("x",)
    # Arguments that are not a list are no arguments (this raised TypeError, a 500, before).
    odd = {**TASK, "command": {"shell": False, "value": "/bin/true", "arguments": 5}}
    assert translate.task(odd, "default:1").container.arguments == ()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"resources": [{"name": "bananas", "type": "SCALAR", "scalar": {"value": 1}}]}, "bananas"),
        ({"resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": -1}}]}, ">= 0"),
        ({"resources": [{"name": "gpus", "type": "SCALAR", "scalar": {"value": 0.5}}]}, "whole"),
        (
            {
                "resources": [
                    {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 9, "end": 1}]}}
                ]
            },
            "port",
        ),
        ({"executor": {"executor_id": {"value": "e"}}}, "executors"),
        ({"container": {"type": "APPC"}}, "APPC"),
        ({"container": {"type": "DOCKER", "docker": {}}}, "image"),
        ({"task_id": {"value": ""}}, "task_id"),
        ({"task_id": "t1"}, "task_id"),
        ({"command": None}, "command"),
        ({"health_check": {"type": "GRPC"}}, "GRPC"),
    ],
)
def test_a_bad_task_is_refused_with_a_reason(change: dict[str, Any], says: str) -> None:
    with pytest.raises(Invalid, match=says):
        translate.task({**TASK, **change}, "default:1")


KEYS = [*sorted(TASK), *"type value shell arguments docker image mesos scalar ranges range begin end".split()]
KEYS += "name http tcp port path variables environment nanoseconds".split()
"""Keys the translation reads, so random objects reach its every branch."""
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(JSON, st.dictionaries(st.sampled_from(sorted(TASK)), JSON, max_size=4))
def test_any_json_is_translated_or_refused(anything: Any, overrides: dict[str, Any]) -> None:
    for candidate in (anything, {**TASK, **overrides}):
        try:
            translate.task(candidate, "default:1")
        except Invalid:
            pass


def test_statuses_carry_mesos_names_and_uuids_only_from_agents() -> None:
    ran = wire.TaskStatus(
        task_id="t1",
        state=wire.TaskState.RUNNING,
        agent_id="a1",
        reason=wire.StatusReason.HEALTH_CHANGED,
        healthy=True,
    )
    mesos = translate.status(ran)
    assert mesos["state"] == "TASK_RUNNING" and mesos["reason"] == "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
    assert mesos["source"] == "SOURCE_EXECUTOR" and mesos["healthy"] is True
    assert translate.uuid_from_mesos(mesos["uuid"]) == ran.uuid
    lost = wire.TaskStatus(
        task_id="t2", state=wire.TaskState.LOST, agent_id="a1", reason=wire.StatusReason.INVALID_OFFERS
    )
    mesos = translate.status(lost)
    assert (
        mesos["source"] == "SOURCE_MASTER"
        and "uuid" not in mesos
        and mesos["reason"] == "REASON_INVALID_OFFERS"
    )
    with pytest.raises(Invalid):
        translate.uuid_from_mesos("not base64!")


def test_recordio_reassembles_records_cut_anywhere() -> None:
    events = [{"type": "HEARTBEAT"}, {"type": "OFFERS", "offers": {"offers": [{"id": {"value": "o" * 300}}]}}]
    stream = b"".join(recordio.encode(e) for e in events)
    for cut in (1, 2, 7, 64):
        decoder, got = recordio.Decoder(), []
        for i in range(0, len(stream), cut):
            got += decoder.feed(stream[i : i + cut])
        assert got == events and decoder.pending == 0
    assert recordio.encode(events[0]) == b"%d\n%s" % (
        len(json.dumps(events[0], separators=(",", ":"))),
        b'{"type":"HEARTBEAT"}',
    )
    with pytest.raises(ValueError, match="out of bounds"):
        recordio.Decoder().feed(b"999999999999\n")
