"""Scratch vhosts (a test's, a benchmark's): each says which process made it, and one whose maker is gone
is deleted by the next that looks.

A benchmark killed mid-run never reaches its clean-up, and its vhost stays with every queue in it: two
left by killed 50,000-agent runs took the broker over its memory watermark, so the next run's publishers
were blocked and its figures were wrong (docs/BENCHMARKS.md). The maker's pid and host are written in the
vhost's description; :func:`sweep_abandoned` deletes the vhosts of makers on this host that no longer
run. A vhost without that description (an operator's, a cluster's own) is never touched, nor one made on
another host or by a process that still runs (a test of another worker, in parallel).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket

from meseta.runtime.rabbitmq import Management

log = logging.getLogger(__name__)

_TAG = re.compile(r"^meseta scratch vhost of pid (\d+) on (\S+)$")


def maker_tag(pid: int | None = None, host: str | None = None) -> str:
    """The description a scratch vhost carries: this process, on this host."""
    return f"meseta scratch vhost of pid {pid or os.getpid()} on {host or socket.gethostname()}"


def create_scratch_vhost(management: Management, name: str) -> None:
    """A vhost for this process's test or run, with every permission for the API's user."""
    management.create_vhost(name, description=maker_tag())


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: running
    return True


def abandoned(management: Management) -> list[str]:
    """Scratch vhosts made on this host by a process that no longer runs."""
    here = socket.gethostname()
    found = json.loads(management.call("GET", "/vhosts?columns=name,description"))
    names = []
    for vhost in found:
        match = _TAG.match(str(vhost.get("description") or ""))
        if match and match.group(2) == here and not _running(int(match.group(1))):
            names.append(str(vhost["name"]))
    return names


def sweep_abandoned(management: Management) -> list[str]:
    """Delete :func:`abandoned` vhosts (a big one takes minutes); their names."""
    names = abandoned(management)
    for name in names:
        log.warning("deleting vhost %s: the process that made it is gone (a killed test or benchmark)", name)
        management.delete_vhost(name)
    return names
