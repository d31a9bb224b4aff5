"""meseta.sdk.frames packs a publish byte for byte as the AMQP client's own marshalling does."""

from __future__ import annotations

import pytest
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from meseta.sdk._frames import Outgoing, publish_frames

TRACEPARENT = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"


def _reference(channel: int, message: Outgoing, max_body: int) -> bytes:
    body = message.body
    chunks = [body[i : i + max_body] for i in range(0, len(body), max_body)]
    frames = [
        spec.Basic.Publish(exchange=message.exchange, routing_key=message.routing_key, mandatory=True),
        ContentHeader(0, len(body), message.properties()),
        *(ContentBody(chunk) for chunk in chunks),
    ]
    return ChannelFrame.marshall(channel_number=channel, frames=frames).payload


@pytest.mark.parametrize(
    "message",
    [
        Outgoing(
            "meseta.launches", "agent-1", b'{"type":"LAUNCH"}', "LAUNCH", "m1", {"traceparent": TRACEPARENT}
        ),
        Outgoing(
            "meseta.calls",
            "call",
            b"x" * 300,
            "ACCEPT",
            "0123456789abcdef" * 2,
            {"traceparent": TRACEPARENT, "tracestate": "a=b", "x-meseta-epoch": 3},
            persistent=True,
            correlation_id="c-9",
            reply_to="amq.gen-abc",
            user_id="meseta.framework.alice",
        ),
        Outgoing("", "amq.gen-reply", b"", "ERROR", "m3", {}, correlation_id="", reply_to=None),
        Outgoing("meseta.offers", "fw-1", "é".encode() * 5000, "OFFERS", "m4", {"x-meseta-epoch": 70_000}),
    ],
    ids=["launch", "every-property", "empty", "several-body-frames"],
)
def test_the_frames_are_those_pamqp_writes(message: Outgoing) -> None:
    for channel, max_body in ((1, 131064), (7, 4096)):
        assert publish_frames(channel, message, max_body) == _reference(channel, message, max_body)


def test_an_overlong_routing_key_is_refused() -> None:
    with pytest.raises(ValueError, match="255"):
        publish_frames(1, Outgoing("x", "k" * 256, b"{}", "T", "m", {}), 4096)
