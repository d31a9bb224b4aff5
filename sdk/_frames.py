"""The AMQP 0-9-1 frames of one publish, packed directly.

The AMQP client marshals a publish through pamqp's generic, table-driven encoder (every property
looked up, typed and encoded one by one), and wraps it in a few context managers and objects: about
as much time as the rest of a hop's Python work on the sending side. Meseta's publishes always carry
the same few properties, so they are packed here with ``struct``, byte for byte what pamqp writes
(tests/unit/sdk/test_frames.py compares the two), and handed to the client's writer with its confirm
bookkeeping (meseta.sdk.bus).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import aio_pika
from pamqp import commands as spec
from pamqp import encode

_FRAME_END = b"\xce"
_METHOD, _HEADER, _BODY = 1, 2, 3
_BASIC = 60
_PUBLISH = 40
_FRAME = struct.Struct(">BHI")
_PUBLISH_START = struct.pack(">HHH", _BASIC, _PUBLISH, 0)  # class, method, reserved ticket
_HEADER_START = struct.Struct(">HHQH")  # class, weight, body size, property flags

# Property flags, in the order the properties are written (AMQP 0-9-1, basic class).
_CONTENT_TYPE = 1 << 15
_HEADERS = 1 << 13
_DELIVERY_MODE = 1 << 12
_PRIORITY = 1 << 11
_CORRELATION_ID = 1 << 10
_REPLY_TO = 1 << 9
_MESSAGE_ID = 1 << 7
_TYPE = 1 << 5
_USER_ID = 1 << 4


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: where to, its body and the properties Meseta sets."""

    exchange: str
    routing_key: str
    body: bytes
    message_type: str
    message_id: str
    headers: dict[str, Any]
    persistent: bool = False
    correlation_id: str | None = None
    reply_to: str | None = None
    content_type: str = "application/json"
    user_id: str | None = None
    """The publishing connection's user: the broker refuses any other, so receivers can trust it."""

    @property
    def delivery_mode(self) -> int:
        return 2 if self.persistent else 1

    def properties(self) -> spec.Basic.Properties:
        """The same properties as the AMQP client's own message would carry (its publish path uses
        them; :func:`publish_frames` writes them byte for byte)."""
        return aio_pika.Message(
            b"",
            content_type=self.content_type,
            type=self.message_type,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            headers=self.headers,
            delivery_mode=aio_pika.DeliveryMode(self.delivery_mode),
            user_id=self.user_id,
        ).properties


def _shortstr(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        raise ValueError(f"AMQP short string over 255 bytes: {value[:40]!r}...")
    return bytes((len(data),)) + data


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return _FRAME.pack(kind, channel, len(payload)) + payload + _FRAME_END


def publish_frames(channel: int, message: Outgoing, max_body: int, mandatory: bool = True) -> bytes:
    """The method, content header and body frames of ``message`` on ``channel``, as one payload.

    ``max_body`` is the largest body frame's payload (the connection's frame size less 8).
    """
    method = (
        _PUBLISH_START
        + _shortstr(message.exchange)
        + _shortstr(message.routing_key)
        + (b"\x01" if mandatory else b"\x00")
    )
    # Priority 0 is written too, as aio-pika's messages carry it.
    flags = _CONTENT_TYPE | _HEADERS | _DELIVERY_MODE | _PRIORITY | _MESSAGE_ID | _TYPE
    parts = [
        _shortstr(message.content_type),
        encode.field_table(message.headers),
        bytes((message.delivery_mode, 0)),
    ]
    if message.correlation_id:
        flags |= _CORRELATION_ID
        parts.append(_shortstr(message.correlation_id))
    if message.reply_to:
        flags |= _REPLY_TO
        parts.append(_shortstr(message.reply_to))
    parts.append(_shortstr(message.message_id))
    parts.append(_shortstr(message.message_type))
    if message.user_id:
        flags |= _USER_ID
        parts.append(_shortstr(message.user_id))
    body = message.body
    header = _HEADER_START.pack(_BASIC, 0, len(body), flags) + b"".join(parts)
    frames = [_frame(_METHOD, channel, method), _frame(_HEADER, channel, header)]
    frames.extend(_frame(_BODY, channel, body[i : i + max_body]) for i in range(0, len(body), max_body))
    return b"".join(frames)
