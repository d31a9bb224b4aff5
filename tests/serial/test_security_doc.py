"""docs/SECURITY.md's cluster of principals, run as printed: provisioning, a master, an allocator and an
agent each as its own broker user, and the README's framework as principal alice.

Serial: the page's names (users ``meseta.*``, vhost ``prod``) are the broker's, not a test's own; the
users, the vhost, the etcd prefix and the containers are removed afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from pathlib import Path

import pytest

from meseta.ops.users import Credentials, remove_users
from meseta.runtime.etcd import EtcdStore
from meseta.runtime.rabbitmq import Management
from meseta.testing.local import remove_containers
from meseta.testing.processes import free_port
from tests.snippets import ROOT, code_blocks

pytestmark = [pytest.mark.e2e, pytest.mark.serial, pytest.mark.timeout(300)]

PAGE = ROOT / "docs" / "SECURITY.md"


def _printed_and_logs(at: Path) -> tuple[str, str]:
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(at.glob("*.log")))
    return (at / "printed.txt").read_text(errors="replace"), logs


async def test_the_cluster_of_principals_as_printed(tmp_path: Path) -> None:
    (acl,) = code_blocks(PAGE, "json")
    (script,) = code_blocks(PAGE, "sh")
    (hello,) = code_blocks(ROOT / "README.md", "python")
    (tmp_path / "acl.json").write_text(acl)
    (tmp_path / "hello.py").write_text(hello)
    # The repository's .venv, as the page assumes; the test's own etcd prefix, API port, work
    # directory and container label, so nothing else on the machine is touched.
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    run = f"doc-{uuid.uuid4().hex[:8]}"
    prefix = f"/meseta-{run}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MESETA_", "VIRTUAL_ENV"))},
        "MESETA_ETCD_PREFIX": prefix,
        "MESETA_API_PORT": str(free_port()),
        "MESETA_WORK_DIR": str(tmp_path / "agents"),
        "MESETA_CLUSTER": run,
    }
    printed = tmp_path / "printed.txt"
    with printed.open("wb") as out:  # a file, not a pipe: the page's services keep running
        proc = await asyncio.create_subprocess_exec(
            "bash", "-euo", "pipefail", "-c", script, cwd=tmp_path, env=env, start_new_session=True,
            stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        try:
            await asyncio.wait_for(proc.wait(), 120)
        finally:
            text, logs = await asyncio.to_thread(_printed_and_logs, tmp_path)
        assert proc.returncode == 0, text + logs
        assert "hello-1: FINISHED" in text and "it said: hello" in text, text + logs
        credentials = json.loads((tmp_path / "meseta-credentials.json").read_text())
        assert (tmp_path / "meseta-credentials.json").stat().st_mode & 0o077 == 0
        assert set(credentials["passwords"]) == {
            "meseta.master",
            "meseta.allocator",
            "meseta.operator",
            "meseta.agent.a1",
            "meseta.executors.a1",
            "meseta.framework.alice",
        }
        assert "guest" not in (tmp_path / "master.log").read_text()
    finally:
        # The page's services run on in the background (its `&`): their whole session goes.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        saved = tmp_path / "meseta-credentials.json"
        if saved.exists():
            await asyncio.to_thread(remove_users, Management(), Credentials.load(saved).passwords)
        await asyncio.to_thread(Management().delete_vhost, "prod")
        await asyncio.to_thread(remove_containers, run)
        store = EtcdStore("127.0.0.1:2379", prefix)
        await store.connect()
        await store.delete_prefix()
        await store.close()
