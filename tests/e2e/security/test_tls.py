"""AMQP over TLS, and the broker's own bound on message size. Real RabbitMQ (its TLS listener on 5671,
with the certificate of a throwaway CA that ``scripts/infra.sh`` makes on this machine), etcd, dockerd.

The test makes a CA of its own too: a broker whose certificate that CA did not sign is refused, so the
cluster's connections really are verified TLS, not merely encrypted."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import aio_pika
import aiormq.exceptions
import pytest

from meseta.sdk import wire
from meseta.testing.local import local_cluster, run_one, short_task

pytestmark = pytest.mark.e2e

BROKER_CA = Path("/etc/rabbitmq/meseta-tls/ca.pem")


def over_tls(amqp_url: str, cafile: Path) -> str:
    """The same vhost through the broker's TLS listener, checking its certificate against ``cafile``."""
    return amqp_url.replace("amqp://", "amqps://").replace(":5672/", ":5671/") + f"?cafile={cafile}"


async def test_an_offer_cycle_over_tls(amqp_url: str, etcd_prefix: str, tmp_path: Path) -> None:
    assert ":5672/" in amqp_url
    secure = over_tls(amqp_url, BROKER_CA)
    async with local_cluster(secure, etcd_prefix, agents=1) as cluster:
        client = await cluster.framework("over-tls")
        assert (await run_one(client, short_task("t1"))).state == wire.TaskState.FINISHED
        assert cluster.master.bus.url.startswith("amqps://")
    # A CA of the test's own, which never signed the broker's certificate: the connection is refused.
    await asyncio.to_thread(
        subprocess.run,
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other CA",
         "-keyout", str(tmp_path / "ca.key"), "-out", str(tmp_path / "ca.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        connection = await aio_pika.connect(over_tls(amqp_url, tmp_path / "ca.pem"), timeout=10)
        await connection.close()


async def test_the_broker_refuses_a_body_over_its_bound(amqp_url: str) -> None:
    # RabbitMQ's default is 128 MiB a message: a flood of those is the broker's memory. scripts/infra.sh
    # bounds it at 2 MiB (Meseta itself refuses bodies over 1 MiB once they arrive).
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("amq.direct")
        await exchange.publish(aio_pika.Message(b"x" * (wire.MAX_MESSAGE_BYTES + 1)), routing_key="nowhere")
        with pytest.raises(
            aiormq.exceptions.ChannelPreconditionFailed, match="larger than configured max size"
        ):
            await exchange.publish(aio_pika.Message(b"x" * (3 * 1024 * 1024)), routing_key="nowhere")
    finally:
        await connection.close()
