"""Scratch vhosts name the process that made them; those whose maker is gone (a killed test or benchmark)
are deleted by the next sweep, and no other vhost is. Real RabbitMQ management API."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from meseta.runtime.rabbitmq import Management
from meseta.testing.vhosts import abandoned, create_scratch_vhost, maker_tag, sweep_abandoned

pytestmark = pytest.mark.e2e


def vhosts(management: Management) -> set[str]:
    return {v["name"] for v in json.loads(management.call("GET", "/vhosts?columns=name"))}


def test_only_the_vhosts_of_makers_gone_from_this_host_are_swept(infrastructure: None) -> None:
    management = Management()
    gone = subprocess.Popen(["true"])
    gone.wait()
    run = uuid.uuid4().hex[:8]
    names = {
        "gone": f"meseta-sweep-{run}-gone",
        "running": f"meseta-sweep-{run}-running",
        "elsewhere": f"meseta-sweep-{run}-elsewhere",
        "operator": f"meseta-sweep-{run}-operator",
    }
    management.create_vhost(names["gone"], description=maker_tag(pid=gone.pid))
    create_scratch_vhost(management, names["running"])  # this process: it runs
    management.create_vhost(names["elsewhere"], description=maker_tag(pid=gone.pid, host="another-host"))
    management.create_vhost(names["operator"])  # no description: not a scratch vhost
    try:
        listed = set(abandoned(management))
        assert not listed & {names["running"], names["elsewhere"], names["operator"]}
        sweep_abandoned(management)
        # Gone (a sweep of a test running beside this one may have got there first, as it should).
        left = vhosts(management)
        assert names["gone"] not in left
        assert {names["running"], names["elsewhere"], names["operator"]} <= left
        assert json.loads(management.call("GET", f"/vhosts/{names['running']}"))["description"] == maker_tag(
            pid=os.getpid()
        )
    finally:
        for name in names.values():
            management.delete_vhost(name)
