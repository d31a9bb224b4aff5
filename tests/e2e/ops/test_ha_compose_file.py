"""compose/ha.yaml, read by docker-compose itself (no containers started): valid, three of each replicated
part, every service given every broker and etcd member. Bringing it up and killing a node of each is
`make compose-test` (tests/serial/test_compose.py), left out of `make test` for its minutes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HA_FILE = Path(__file__).resolve().parents[3] / "compose" / "ha.yaml"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose"),
]


def compose(*args: str) -> str:
    done = subprocess.run(
        ["docker-compose", "-p", "ha-file-test", "-f", str(HA_FILE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_replicated_stack_is_three_of_each_with_every_address() -> None:
    services = set(compose("config", "--services").split())
    assert {f"rabbitmq-{i}" for i in (1, 2, 3)} | {f"etcd-{i}" for i in (1, 2, 3)} <= services
    assert {"master-1", "master-2", "allocator-1", "allocator-2", "agent-1", "agent-2", "agent-3"} <= services
    config = compose("config")
    meseta = ("master-1", "master-2", "allocator-1", "allocator-2", "agent-1", "agent-2", "agent-3")
    # Every Meseta service (and the example) knows every etcd member; provisioning names every broker.
    assert config.count("MESETA_ETCD_ENDPOINT: etcd-1:2379,etcd-2:2379,etcd-3:2379") == len(meseta) + 1
    assert "rabbitmq-1:5672,rabbitmq-2:5672,rabbitmq-3:5672" in config
    assert config.count("restart: unless-stopped") >= len(meseta) + 6
    # Prometheus scrapes them (compose/prometheus.yml names these services); each has a /ready health check.
    assert "prometheus" in services and "/etc/meseta/prometheus.yml" in config
    assert config.count("/ready") == len(meseta), config
    assert config.count("MESETA_METRICS_PORT: '5052'") == 2  # the allocators
    assert config.count("MESETA_METRICS_PORT: '5051'") == 3  # the agents
    for i in (1, 2, 3):
        assert f"cluster_formation.classic_config.nodes.{i} = rabbit@rabbitmq-{i}" in config
        assert f"etcd-{i}-data" in config and f"rabbitmq-{i}-data" in config
