"""RabbitMQ's management API, for what AMQP cannot do: creating and deleting vhosts."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from urllib.parse import quote

log = logging.getLogger(__name__)

DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:15672/api"


class Management:
    """A client of the management HTTP API (blocking; call it from a thread in async code)."""

    def __init__(
        self, url: str = DEFAULT_MANAGEMENT_URL, user: str = "guest", password: str = "guest"
    ) -> None:
        self.url = url.rstrip("/")
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.user = user

    def call(self, method: str, path: str, body: object | None = None, timeout: float = 10) -> bytes:
        """One API call; raises on an HTTP error."""
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": self._auth, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())

    def create_vhost(self, name: str, description: str = "") -> None:
        """Create a vhost and give our user every permission on it."""
        self.call(
            "PUT", f"/vhosts/{quote(name, safe='')}", {"description": description} if description else {}
        )
        self.call(
            "PUT",
            f"/permissions/{quote(name, safe='')}/{quote(self.user, safe='')}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )

    def delete_vhost(self, name: str, patience: float = 900) -> None:
        """Delete a vhost and everything in it; gone already is fine.

        A benchmark's vhost holds up to 50,000 durable queues: the broker takes minutes to drop them, and
        its HTTP server drops a request that waits that long, which stops the deletion where it got to.
        So the request is made again (each one gets further) until the vhost is gone.
        """
        path = f"/vhosts/{quote(name, safe='')}"
        deadline = time.monotonic() + patience
        while True:
            try:
                self.call("DELETE", path, timeout=max(1.0, deadline - time.monotonic()))
                return
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return
                raise
            except (OSError, http.client.HTTPException) as exc:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"vhost {name} still exists after {patience:.0f} s") from exc
                log.info("deleting vhost %s: %r; asking again", name, exc)
