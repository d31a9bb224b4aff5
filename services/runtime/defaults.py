"""Where a Meseta cluster is found when nothing says otherwise: one definition each, for the services, the
CLI, the SDK and the harnesses (importing this costs nothing)."""

from __future__ import annotations

from typing import Final

AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/"
ETCD_ENDPOINT: Final = "127.0.0.1:2379"
ETCD_PREFIX: Final = "/meseta"
API: Final = "http://127.0.0.1:5050"
"""The leading master's state API (a comma-separated list finds the leader among several)."""
UP_DIR: Final = "/var/tmp/meseta-up"
"""``meseta up``'s logs, agents' work directories and operator credential (``operator-token``)."""
OPERATOR_TOKEN_NAME: Final = "operator-token"
LEASE_TTL: Final = 1
TASK_IMAGE: Final = "meseta-task:latest"
"""The offline task image (busybox-static) the examples, docs and tests name: ``meseta task-image``."""
"""Seconds of a leader's lease: a dead leader's standby takes over within about this long."""
