"""Who may subscribe through the gateway, and as whom: HTTP Basic principals mapped to Meseta's."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from meseta.testing.local import local_cluster
from meseta.testing.mesos import Subscription, running_gateway, subscribe, url_of

pytestmark = pytest.mark.timeout(120)


async def test_basic_principals_map_to_meseta_logins_and_roles(
    amqp_url: str, etcd_prefix: str, tmp_path: Path
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1, principals=["spark", "other"]) as cluster:
        assert cluster.credentials is not None
        credentials = tmp_path / "credentials.json"
        cluster.credentials.save(credentials)
        spark_user = cluster.principals.framework("spark")
        other_user = cluster.principals.framework("other")
        principals = tmp_path / "principals.json"
        principals.write_text(
            json.dumps(
                {
                    # Its broker password is its HTTP password too.
                    "spark": {"amqp_user": spark_user, "role": "*"},
                    "other": {"password": "other-pw", "amqp_url": cluster.url(other_user), "role": "*"},
                }
            )
        )
        async with running_gateway(
            amqp_url, etcd_prefix, dev=False, principals_file=principals, credentials_file=credentials
        ) as gateway:
            base = url_of(gateway)
            info = {"name": "spark-app", "failover_timeout": 30}
            refused = await subscribe(base, info)
            assert isinstance(refused, aiohttp.ClientResponse) and refused.status == 401
            assert refused.headers["WWW-Authenticate"].startswith("Basic")
            wrong = await subscribe(base, info, auth=("spark", "guess"))
            assert isinstance(wrong, aiohttp.ClientResponse) and wrong.status == 401
            spark_auth = ("spark", cluster.credentials.passwords[spark_user])
            role = await subscribe(base, {**info, "role": "prod"}, auth=spark_auth)
            assert isinstance(role, aiohttp.ClientResponse) and role.status == 403

            spark = await subscribe(base, info, auth=spark_auth)
            assert isinstance(spark, Subscription)
            # Logged in to the broker as spark's own user: the master knows it as that principal's.
            framework = cluster.master.cluster.frameworks[spark.framework_id]
            assert framework.principal == "spark"
            await spark.wait(lambda e: e["type"] == "OFFERS", 30, "an offer")

            other_auth = ("other", "other-pw")
            response = await spark.call("REVIVE", auth=other_auth)
            assert response.status == 403
            # Another principal cannot take spark's framework over by naming its id.
            taken = await subscribe(base, {"name": "thief"}, framework_id=spark.framework_id, auth=other_auth)
            assert isinstance(taken, aiohttp.ClientResponse) and taken.status == 403
            assert (await spark.call("REVIVE", auth=spark_auth)).status == 202
            await spark.call("TEARDOWN", auth=spark_auth)
            await spark.close()
