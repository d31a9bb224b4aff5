"""Who may subscribe through the gateway: HTTP Basic principals mapped to Meseta principals and roles.

The file (``--principals``, JSON, readable by the gateway only) maps each Mesos principal to the Meseta
framework user the gateway logs in as on its behalf and the role it allocates under. The user is named
either as a whole AMQP URL (``amqp_url``) or as a user of the cluster's credentials file (``amqp_user``,
as ``meseta users provision`` wrote it). The principal's HTTP password is ``password``, or, where none is
given, that user's own broker password (the framework is told one secret, not two)::

    {"spark": {"amqp_user": "meseta.framework.spark", "role": "batch"},
     "legacy": {"password": "s3cret", "amqp_url": "amqp://meseta.framework.legacy:pw@host/vhost",
                "role": "*"}}

Without a file (``--dev``) every request is let in and frameworks share the gateway's own AMQP URL.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from meseta.ops.users import Credentials


@dataclass(frozen=True)
class Principal:
    name: str
    password: str
    amqp_url: str
    role: str


class Unauthorized(Exception):
    """No credentials, or wrong ones: 401."""


def load(path: Path, credentials: Credentials | None = None) -> dict[str, Principal]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of principals")
    found = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("role"), str):
            raise ValueError(f"{path}: principal {name!r} needs a role")
        if isinstance(entry.get("amqp_url"), str):
            url, user_password = entry["amqp_url"], None
        elif isinstance(entry.get("amqp_user"), str):
            user = entry["amqp_user"]
            if credentials is None or user not in credentials.passwords:
                raise ValueError(f"{path}: principal {name!r}: no user {user!r} in the credentials file")
            url, user_password = credentials.url(user), credentials.passwords[user]
        else:
            raise ValueError(f"{path}: principal {name!r} needs amqp_url or amqp_user")
        password = entry.get("password", user_password)
        if not isinstance(password, str) or not password:
            raise ValueError(f"{path}: principal {name!r} needs a password")
        found[name] = Principal(name, password, url, entry["role"])
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
