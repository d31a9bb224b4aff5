"""etcd over TLS with authentication: an etcd of the test's own (certificates from a CA the test makes,
a root user with a password), and a cluster whose master and allocator elect and keep their registry
there. Real etcd, RabbitMQ, dockerd.

Before, Meseta could only reach etcd over plain gRPC without a user (aetcd opens insecure channels)."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meseta.runtime.etcd import EtcdStore
from meseta.sdk import wire
from meseta.testing.local import local_cluster, run_one, short_task
from meseta.testing.processes import free_port
from meseta.testing.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("etcd") is None, reason="no etcd binary")]

PASSWORD = "s3cret-root"


def _make_certificates(at: Path) -> None:
    """A throwaway CA, and a server certificate for 127.0.0.1 it signed."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=at)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr")  # fmt: skip
    (at / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "san.ext", "-out", "server.pem")  # fmt: skip


def _gateway(base: str, ca: Path, path: str, body: dict[str, object]) -> None:
    """A call to etcd's JSON gateway over TLS."""
    request = urllib.request.Request(f"{base}/v3/{path}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(ca)), timeout=5):
        pass


@pytest.fixture
async def secure_etcd(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """An etcd serving TLS only, with authentication on: (its base URL, the CA)."""
    await asyncio.to_thread(_make_certificates, tmp_path)
    client, peer = free_port(), free_port()
    base = f"https://127.0.0.1:{client}"
    proc = await asyncio.create_subprocess_exec(
        "etcd", "--name", "tls", "--data-dir", str(tmp_path / "data"),
        "--listen-client-urls", base, "--advertise-client-urls", base,
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"tls=http://127.0.0.1:{peer}",
        "--cert-file", str(tmp_path / "server.pem"), "--key-file", str(tmp_path / "server.key"),
        stdout=asyncio.subprocess.DEVNULL, stderr=(tmp_path / "etcd.log").open("wb"),
    )  # fmt: skip
    ca = tmp_path / "ca.pem"
    try:

        def healthy() -> bool:
            try:
                _gateway(base, ca, "maintenance/status", {})
                return True
            except OSError:
                return False

        await wait_for(lambda: healthy(), 30, "the TLS etcd")
        for path, body in (
            ("auth/user/add", {"name": "root", "password": PASSWORD}),
            ("auth/user/grant", {"user": "root", "role": "root"}),
            ("auth/enable", {}),
        ):
            await asyncio.to_thread(_gateway, base, ca, path, body)
        yield base, ca
    finally:
        proc.terminate()
        await proc.wait()


async def test_an_offer_cycle_with_etcd_over_tls_and_authentication(
    amqp_url: str, secure_etcd: tuple[str, Path]
) -> None:
    base, ca = secure_etcd
    endpoint = f"{base.replace('https://', f'https://root:{PASSWORD}@')}?cacert={ca}"
    async with local_cluster(amqp_url, "/meseta-tls", agents=1, etcd_endpoint=endpoint) as cluster:
        client = await cluster.framework("over-tls")
        assert (await run_one(client, short_task("t1"))).state == wire.TaskState.FINISHED
        assert cluster.master.epoch >= 1
        # The lease is kept over TLS too (its keeper has a client of its own): still leading after
        # many refreshes (it lost the lease within a second when that client was a plain one).
        await wait_for(lambda: cluster.master.leadership.refreshed >= 12, 15, "lease refreshes over TLS")
        assert cluster.master.leading.is_set() and cluster.master._failure is None
        store = EtcdStore(endpoint, "/meseta-tls")
        await store.connect()
        try:
            assert client.framework_id in await store.list_json("frameworks")
        finally:
            await store.close()
    # Without the password, or without TLS, etcd says no.
    for refused in (
        f"{base}?cacert={ca}".replace("https://", "https://root:wrong@"),
        base.replace("https", "http"),
    ):
        store = EtcdStore(refused, "/meseta-tls")
        with pytest.raises(Exception):  # noqa: B017 -- grpc's errors differ by failure
            await asyncio.wait_for(store.connect(), 10)
            await asyncio.wait_for(store.get_json("anything"), 10)
        await store.close()
