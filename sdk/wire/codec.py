"""Encoding and decoding: every refusal says why, for the dead-letter header and the sender."""

from __future__ import annotations

import contextlib
import json

from pydantic import ValidationError

from meseta.sdk.wire.base import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Message
from meseta.sdk.wire.channels import Channel

__all__ = [
    "DecodeError",
    "decode",
    "encode",
]


class DecodeError(ValueError):
    """A message that cannot be accepted; ``reason`` says why, for the dead-letter header and the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(message: Message) -> bytes:
    """Serialize a message for the wire."""
    return message.model_dump_json().encode()


def decode(body: bytes, channel: Channel) -> Message:
    """Parse and validate one message for ``channel``.

    Raises:
        DecodeError: oversized, not JSON, not an object, wrong version, unknown type, or invalid fields.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"oversized: {len(body)} bytes > {MAX_MESSAGE_BYTES}")
    # Fast path: parsed and validated in one pass by pydantic-core (half the cost of json.loads and then
    # validating the objects). Whatever it refuses goes the slow way below, which says precisely why.
    with contextlib.suppress(ValidationError):
        message = channel.validate_json(body)
        if message.version == PROTOCOL_VERSION and "version" in message.model_fields_set:
            return message
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"malformed: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DecodeError(f"malformed: expected a JSON object, got {type(data).__name__}")
    version = data.get("version")
    if version != PROTOCOL_VERSION:
        raise DecodeError(f"wrong version: {version!r}, this side speaks {PROTOCOL_VERSION}")
    kind = data.get("type")
    if kind not in channel.types:
        raise DecodeError(f"unknown type {kind!r} on {channel.name}; expected one of {sorted(channel.types)}")
    try:
        return channel.validate(data)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise DecodeError(f"invalid {kind}: {errors}") from None


def first_reason(exc: ValidationError, whole: str = "") -> str:
    """The first of a validation's errors as ``field.path: message``; an error of the whole object is
    named ``whole`` (or given bare when that is empty). For answers to a caller, one reason at a time."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or whole
    return f"{where}: {first['msg']}" if where else str(first["msg"])
