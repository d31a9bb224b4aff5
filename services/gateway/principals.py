"""Who may subscribe through the gateway: HTTP Basic principals mapped to Meseta principals and roles.

The file (``--principals``, JSON, readable by the gateway only) maps each Mesos principal to its password,
the AMQP URL the gateway logs in with on its behalf (the Meseta framework principal's own, as ``meseta
users provision`` made it) and the role it allocates under::

    {"spark": {"password": "s3cret", "amqp_url": "amqp://meseta.fw.spark:...@host/vhost", "role": "batch"}}

Without a file (``--dev``) every request is let in and frameworks share the gateway's own AMQP URL.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Principal:
    name: str
    password: str
    amqp_url: str
    role: str


class Unauthorized(Exception):
    """No credentials, or wrong ones: 401."""


def load(path: Path) -> dict[str, Principal]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of principals")
    found = {}
    for name, entry in data.items():
        try:
            found[name] = Principal(name, str(entry["password"]), str(entry["amqp_url"]), str(entry["role"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: principal {name!r} needs password, amqp_url and role ({exc})"
            ) from None
    return found


def basic(header: str | None) -> tuple[str, str] | None:
    """(principal, password) of an ``Authorization: Basic ...`` header; None without one."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("only HTTP Basic authentication is supported")
    try:
        principal, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("a malformed Basic credential") from None
    if not sep:
        raise Unauthorized("a malformed Basic credential")
    return principal, password


def authenticate(known: dict[str, Principal], header: str | None) -> Principal:
    """The principal a request's credentials prove; Unauthorized otherwise."""
    given = basic(header)
    if given is None:
        raise Unauthorized("credentials required (HTTP Basic)")
    found = known.get(given[0])
    # Compared in constant time, and a wrong name costs the same as a wrong password.
    expected = found.password if found is not None else "\0"
    if not hmac.compare_digest(expected.encode(), given[1].encode()) or found is None:
        raise Unauthorized("wrong principal or password")
    return found
