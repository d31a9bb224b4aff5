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

    def create_vhost(self, name: str) -> None:
        """Create a vhost and give our user every permission on it."""
        self.call("PUT", f"/vhosts/{quote(name, safe='')}", {})
        self.call(
            "PUT",
            f"/permissions/{quote(name, safe='')}/{quote(self.user, safe='')}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )

    def delete_vhost(self, name: str, patience: float = 900) -> None:
        """Delete a vhost and everything in it, and wait until it is gone; gone already is fine.

        A benchmark's vhost holds up to 50,000 durable queues: the broker takes minutes to drop them, and
        its HTTP server closes a request that waits that long. The deletion goes on regardless, so a
        dropped request is followed by polling until the vhost is gone (or ``patience`` runs out).
        """
        path = f"/vhosts/{quote(name, safe='')}"
        deadline = time.monotonic() + patience
        try:
            self.call("DELETE", path, timeout=patience)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return
            raise
        except (OSError, http.client.HTTPException) as exc:  # timed out or disconnected: still deleting
            log.info("deleting vhost %s: %r; waiting for it to go", name, exc)
        while time.monotonic() < deadline:
            try:
                self.call("GET", path, timeout=30)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return
                raise
            except (OSError, http.client.HTTPException):
                pass  # the broker is busy dropping queues
            time.sleep(2)
        raise TimeoutError(f"vhost {name} still exists after {patience:.0f} s")
