"""A service's table of handlers, checked against the channels it consumes: a message added to one of
them without a handler, or a handler left for a message no longer there, fails at start-up (and in the
unit tests), not at the first such message."""

from __future__ import annotations

from collections.abc import Iterable

from meseta.sdk import wire


def check_coverage(
    service: str, handled: Iterable[type[wire.Message]], channels: Iterable[wire.Channel]
) -> None:
    """Raise unless ``handled`` is exactly the messages of ``channels``."""
    handled, inbound = set(handled), {model for channel in channels for model in channel.models}
    if missing := inbound - handled:
        raise ValueError(f"no {service} handler for {sorted(m.__name__ for m in missing)}")
    if extra := handled - inbound:
        raise ValueError(
            f"{service} handlers for messages it never receives: {sorted(m.__name__ for m in extra)}"
        )
