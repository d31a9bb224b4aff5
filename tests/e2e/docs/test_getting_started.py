"""docs/GETTING_STARTED.md followed to the letter: pip install into a fresh venv, the task image,
``meseta up``, the page's framework (also the README's), Ctrl-C. And ``meseta up`` without a broker."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import docker
import pytest

from meseta.agent.containerizer import LABEL_CLUSTER
from meseta.testing.processes import free_port
from tests.snippets import ROOT, code_blocks

pytestmark = pytest.mark.e2e

PAGE = ROOT / "docs" / "GETTING_STARTED.md"


def _copy_of_the_repository(into: Path) -> None:
    """What a user would have: the tracked files (not this checkout's venv or caches)."""
    skip = shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "results"
    )
    shutil.copytree(ROOT, into, ignore=skip, symlinks=True)


async def _run(script: str, cwd: Path, env: dict[str, str], timeout: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", script, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{script!r} exited {proc.returncode}:\n{text[-4000:]}"
    return text


async def _line_with(stream: asyncio.StreamReader, needle: str, timeout: float) -> list[str]:
    """Lines of ``stream`` up to the first that holds ``needle``."""
    seen: list[str] = []

    async def read() -> list[str]:
        while line := (await stream.readline()).decode(errors="replace"):
            seen.append(line)
            if needle in line:
                return seen
        raise AssertionError(f"ended before {needle!r}:\n{''.join(seen)}")

    try:
        return await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise AssertionError(f"no {needle!r} within {timeout} s:\n{''.join(seen)}") from None


def _containers(label: str) -> list[str]:
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={label}"})
        return [str(c.id) for c in found]
    finally:
        client.close()


def test_the_readme_framework_is_the_page_s() -> None:
    # One program, shown in two places: the run below covers both.
    assert code_blocks(ROOT / "README.md", "python") == code_blocks(PAGE, "python")


async def test_the_getting_started_page_as_written(amqp_url: str, etcd_prefix: str, tmp_path: Path) -> None:
    _, install, up, run, operate = code_blocks(PAGE, "sh")
    (hello,) = code_blocks(PAGE, "python")
    work, home = tmp_path / "work", tmp_path / "home"
    home.mkdir()
    _copy_of_the_repository(work / "meseta")
    cluster = f"gs-{uuid.uuid4().hex[:8]}"
    api_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MESETA_", "VIRTUAL_ENV"))},
        "HOME": str(home),
        # The test's own broker vhost, etcd prefix, port, directory and container label: parallel-safe.
        "MESETA_AMQP_URL": amqp_url,
        "MESETA_ETCD_PREFIX": etcd_prefix,
        "MESETA_API_PORT": str(api_port),
        "MESETA_API": f"http://127.0.0.1:{api_port}",
        "MESETA_UP_DIR": str(tmp_path / "up"),
        "MESETA_CLUSTER": cluster,
        # The machine's wheel cache (HOME is the test's): the install need not download again.
        "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }

    await _run(install, work, env, timeout=600)

    cluster_proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", up, cwd=work, env=env, start_new_session=True,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert cluster_proc.stdout is not None
        said = await _line_with(cluster_proc.stdout, "Ctrl-C stops the cluster", 120)
        assert any(amqp_url in line for line in said), said

        (work / "hello.py").write_text(hello)
        out = await _run(run, work, env, timeout=120)
        assert "hello-1: FINISHED" in out and "it said: hello" in out, out
        assert _containers(cluster), "the task ran in no container of this cluster"

        # The operator commands find meseta up's credential on their own. The page names the default
        # cluster's agent; this test's cluster has its own name (parallel-safe), so its agent ids differ.
        assert any(f"{tmp_path / 'up' / 'operator-token'}" in line for line in said), said
        out = await _run(operate.replace("meseta-up-agent-", f"{cluster}-agent-"), work, env, timeout=60)
        assert f"agent {cluster}-agent-1 DRAINED: it runs no task" in out, out  # hello-1 has finished
        assert f"agent {cluster}-agent-1 ACTIVE" in out and "policy set to lottery" in out, out
    finally:
        if cluster_proc.returncode is None:
            os.killpg(cluster_proc.pid, signal.SIGINT)  # Ctrl-C
        code = await asyncio.wait_for(cluster_proc.wait(), 60)
    assert code == 0
    assert not _containers(cluster), "meseta up left its containers behind"


def test_up_says_what_is_missing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meseta.cli", "up", "--amqp-url", "amqp://guest:guest@127.0.0.1:1/"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "RabbitMQ does not answer at amqp://guest:guest@127.0.0.1:1/" in done.stderr
    assert "rabbitmq-server" in done.stderr  # how to start it
