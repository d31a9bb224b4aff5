"""The AMQP fast path: a publish packed by :mod:`meseta.sdk._frames` and queued straight for aiormq's
writer, with aiormq's own confirm bookkeeping. Every access to aiormq's private state is in this module.

aiormq's public publish marshals each message through pamqp's generic encoder and takes the channel's lock
and a few wrappers: as much Python as the rest of a hop (docs/BENCHMARKS.md, items 21-24). The fast path
skips that, but it writes state aiormq keeps for itself: the channel's delivery tag, its confirmation
futures, the message-id index of returned messages, its writer's queue, and reads its private lock. A
release that changed any of these could make publishes hang or be confirmed wrongly, silently. So:

- aiormq and pamqp are pinned in pyproject.toml to the minor versions this was written and tested for
  (:data:`TESTED`);
- :func:`check` looks, once per bus, at the installed versions and at a live channel's state, and the bus
  uses the fast path only when all is as expected; otherwise it says why in one log line and publishes
  through aiormq's public ``basic_publish``;
- ``MESETA_AMQP_FAST_PATH=0`` turns it off (for an A/B run, or to rule it out in a bug hunt).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import aiormq
from aiormq.abc import ChannelFrame

from meseta.sdk._frames import Outgoing, publish_frames

log = logging.getLogger(__name__)

SWITCH = "MESETA_AMQP_FAST_PATH"
TESTED: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "aiormq": ((7, 2), (7, 3)),
    "pamqp": ((4, 0), (4, 1)),
}
"""Package -> [lowest, above highest) (major, minor) this path was tested with."""

_LOCK = "_Channel__lock"
"""aiormq's name-mangled channel lock: held while the client itself publishes or calls."""

_said: set[str] = set()


@dataclass(frozen=True)
class Verdict:
    """Whether the fast path may be used, and why not."""

    enabled: bool
    reason: str = ""


@functools.cache  # read once per process: every bus connects through the check
def _version(package: str) -> tuple[int, int] | None:
    try:
        major, minor, *_ = metadata.version(package).split(".")
        return int(major), int(minor)
    except (metadata.PackageNotFoundError, ValueError):
        return None


def check(channel: Any, versions: dict[str, tuple[int, int] | None] | None = None) -> Verdict:
    """Whether the fast path may publish on ``channel`` (an aiormq channel, open): switched on, tested
    versions installed, and the private state it writes there, of the types it expects."""
    if os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "off", "no"):
        return Verdict(False, f"{SWITCH} turns it off")
    found = versions if versions is not None else {name: _version(name) for name in TESTED}
    for name, (low, high) in TESTED.items():
        version = found.get(name)
        if version is None or not low <= version < high:
            shown = "missing" if version is None else f"{version[0]}.{version[1]}"
            return Verdict(False, f"{name} {shown} is not the tested {low[0]}.{low[1]}.x")
    expected: tuple[tuple[str, type | tuple[type, ...]], ...] = (
        ("delivery_tag", int),
        ("confirmations", dict),
        ("message_id_delivery_tag", dict),
        ("write_queue", asyncio.Queue),
        (_LOCK, asyncio.Lock),
        ("number", int),
        ("max_content_size", int),
    )
    for attribute, kind in expected:
        if not isinstance(getattr(channel, attribute, None), kind):
            return Verdict(False, f"aiormq's channel has no {attribute} of the expected type")
    if not callable(getattr(channel, "create_future", None)):
        return Verdict(False, "aiormq's channel has no create_future")
    return Verdict(True)


def say_once(service: str, verdict: Verdict) -> None:
    """The one log line of a fallback (once per process and reason)."""
    if not verdict.enabled and verdict.reason not in _said:
        _said.add(verdict.reason)
        log.warning(
            "%s: AMQP fast path off (%s): publishing through aiormq's own path", service, verdict.reason
        )


def busy(channel: aiormq.Channel) -> bool:
    """Whether a publish must go through the client's own path, in turn: the channel is closed, its lock
    is held (a publish or call of the client's own is under way) or its writer's queue is full."""
    lock = getattr(channel, _LOCK, None)
    return (
        channel.is_closed or not isinstance(lock, asyncio.Lock) or lock.locked() or channel.write_queue.full()
    )


async def publish(channel: aiormq.Channel, outgoing: Outgoing) -> None:
    """Queue the packed frames for the connection's writer and wait for the broker's confirm, booked as
    aiormq books its own (sequence number, the future its reader resolves, the message id a returned
    message is matched by)."""
    payload = publish_frames(channel.number, outgoing, channel.max_content_size)
    channel.delivery_tag += 1
    tag = channel.delivery_tag
    confirmation = channel.create_future()
    channel.confirmations[tag] = confirmation
    channel.message_id_delivery_tag[outgoing.message_id] = tag

    def forget(_: asyncio.Future[Any]) -> None:
        if channel.message_id_delivery_tag.get(outgoing.message_id) == tag:
            del channel.message_id_delivery_tag[outgoing.message_id]

    confirmation.add_done_callback(forget)
    channel.write_queue.put_nowait(ChannelFrame(payload=payload, should_close=False))
    await confirmation
