"""Smoke-sized runs of every benchmark, so they keep working (figures come from full runs, not here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Serial: each starts a master, an allocator and an emulator process, which would crowd the parallel suite.
pytestmark = [pytest.mark.e2e, pytest.mark.serial, pytest.mark.timeout(300)]

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(tmp_path: Path, script: str, *args: str) -> dict[str, object]:
    env = {**os.environ, "MESETA_BENCH_RESULTS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=BENCH,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outputs = sorted(tmp_path.glob("*.json"))
    assert outputs, done.stdout
    return json.loads(outputs[0].read_text())  # type: ignore[no-any-return]


def test_offer_cycle_smoke(tmp_path: Path) -> None:
    result = run(tmp_path, "offer_cycle.py", "--agents", "50", "--frameworks", "2", "--duration", "4",
                 "--task-seconds", "2", "--warmup", "2", "--repeat", "2")  # fmt: skip
    assert result["agents"] == 50 and result["frameworks"] == 2 and result["task_jitter"] == 0.5
    assert isinstance(result["cycles"], int) and result["cycles"] > 0
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]  # type: ignore[operator]
    # Two runs, their cycles pooled: the pooled median lies between the runs' own.
    runs = result["runs"]
    assert isinstance(runs, list) and len(runs) == 2
    assert result["cycles"] == sum(r["cycles"] for r in runs) == len(result["round_trips_ms"])  # type: ignore[arg-type]
    assert min(r["p50_ms"] for r in runs) <= result["p50_ms"] <= max(r["p50_ms"] for r in runs)


def test_launch_throughput_smoke(tmp_path: Path) -> None:
    result = run(tmp_path, "launch_throughput.py", "--agents", "10", "--tasks", "300", "--repeat", "1")
    assert result["tasks"] == 300 and result["launches_per_s"] > 0  # type: ignore[operator]
    assert result["per_offer"] == 30  # spread over every agent
    cpu = result["cpu_seconds"]
    assert isinstance(cpu, dict) and cpu["master"] > 0 and cpu["emulators"] > 0


def test_fairness_smoke(tmp_path: Path) -> None:
    result = run(tmp_path, "fairness.py", "--agents", "4", "--duration", "8", "--task-seconds", "2")
    shares = result["mean_dominant_share_second_half"]
    assert isinstance(shares, dict) and set(shares) == {"cpu-heavy", "mem-heavy", "balanced", "small"}
    assert all(s > 0 for s in shares.values())
    assert (tmp_path / "fairness.png").read_bytes()[:4] == b"\x89PNG"


def test_scale_smoke(tmp_path: Path) -> None:
    # A window longer than a task (5 s): the tasks end and are replaced in waves, and a 4 s window fell
    # between two waves once the warm-up grew by 0.2 s.
    result = run(tmp_path, "scale.py", "--sizes", "50,100", "--duration", "8", "--frameworks", "2",
                 "--limit", "5", "--warmup", "3")  # fmt: skip
    points = result["points"]
    assert isinstance(points, list) and [p["agents"] for p in points] == [50, 100]
    assert all(p["cycles"] > 0 for p in points)
    assert (tmp_path / "scale.png").read_bytes()[:4] == b"\x89PNG"


def test_broker_floor_smoke(tmp_path: Path) -> None:
    result = run(tmp_path, "broker_floor.py", "--round-trips", "30")
    hops = result["one_hop"]
    assert isinstance(hops, dict)
    assert set(hops) == {
        f"{c}_{p}" for c in ("aio-pika", "meseta-bus") for p in ("back_to_back", "every_10ms")
    }
    assert all(0 < h["p50_ms"] <= h["p99_ms"] for h in hops.values())


def test_gateway_smoke(tmp_path: Path) -> None:
    result = run(tmp_path, "gateway.py", "--tasks", "8")
    assert result["tasks"] == 8
    for path in ("sdk", "gateway"):
        figures = result[path]
        assert isinstance(figures, dict) and 0 < figures["p50_ms"] <= figures["p99_ms"], result


def test_peers_smoke(tmp_path: Path) -> None:
    result = run(
        tmp_path, "peers.py", "--jobs", "10", "--containers", "4", "--in-a-row", "2", "--concurrency", "2"
    )
    # Meseta and both floors always run; a peer either ran or says why not (Slurm is not installed by
    # `make test`: `make bench-peers` installs it).
    for workload, names in (
        ("W1", ("floor (fork/exec)", "meseta (process)")),
        ("W2", ("floor (docker API)", "meseta (docker)")),
        ("W3", ("meseta (holding an offer)", "meseta (no offer held)")),
    ):
        section = result[workload]
        assert isinstance(section, dict)
        for name in names:
            assert "error" not in section[name] and section[name]["p50_ms"] > 0, (workload, name, section)
    peers = result["peers"]
    assert isinstance(peers, dict) and set(peers) == {"slurm", "swarm"}
    for peer, said in peers.items():
        assert said == "ran" or said.startswith("not run: "), (peer, said)
        rows = {n: f for w in ("W1", "W2", "W3") for n, f in result[w].items() if n.startswith(peer)}  # type: ignore[union-attr]
        assert bool(rows) == (said == "ran"), (peer, said, rows)
        assert not [n for n, f in rows.items() if "error" in f], rows


def test_a_daemon_helper_that_exits_mid_measurement_is_left_out(tmp_path: Path) -> None:
    """The peers run measures dockerd's and containerd's CPU; a helper that exits meanwhile is left out
    of the sum (it failed Swarm's W2 once: its /proc entry was gone when the run ended)."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, subprocess, sys\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        "from harness import cpu_by_pid, cpu_used\n"
        "helper = subprocess.Popen(['sleep', '60'])\n"
        "pids = {'daemons': [os.getpid(), helper.pid]}\n"
        "before = cpu_by_pid(pids)\n"
        "assert set(before) == {os.getpid(), helper.pid}\n"
        "helper.kill(); helper.wait()\n"
        "sum(range(3_000_000))\n"
        "used = cpu_used(pids, before)\n"
        "print(used['daemons'] > 0)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
