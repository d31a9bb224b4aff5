"""The envelope every message shares, ids, and the protocol's constants."""

from __future__ import annotations

import random
import re
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_FAILOVER_TIMEOUT",
    "DEFAULT_REFUSE_SECONDS",
    "ID_PATTERN",
    "MAX_BATCH",
    "MAX_MESSAGE_BYTES",
    "MAX_PRIORITY",
    "MAX_SECONDS",
    "MAX_WEIGHT",
    "PROTOCOL_VERSION",
    "UUID_PATTERN",
    "Id",
    "Message",
    "Uuid",
    "is_valid_id",
    "new_id",
    "unique_hex",
]


PROTOCOL_VERSION: Final = 2
"""2: one message per concept, in its batch form (a batch of one is a batch). Other versions are refused
with the reason (``wrong version``), dead-lettered, and answered where the sender can be told."""
MAX_MESSAGE_BYTES: Final = 1 << 20
"""Larger bodies are dead-lettered unread: no legitimate message comes close."""

DEFAULT_FAILOVER_TIMEOUT: Final = 60.0
DEFAULT_REFUSE_SECONDS: Final = 5.0
"""Mesos's default filter: a declined agent is not re-offered to the same framework for this long."""

ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""Ids end up in routing keys and container names, so they are kept to a safe alphabet."""

_ID_RE = re.compile(ID_PATTERN)

Id = Annotated[str, Field(pattern=ID_PATTERN)]

UUID_PATTERN: Final = r"^[0-9a-f]{32}$"
"""A status update's uuid (:func:`unique_hex`): it names a file on the agent, so nothing else passes."""
Uuid = Annotated[str, Field(pattern=UUID_PATTERN)]


def unique_hex() -> str:
    """128 random bits as hex: ids for dedupe, not secrets. ``uuid4`` reads the kernel's entropy on every
    call, a measurable cost at thousands of messages a second; the (fork-safe) Mersenne Twister does not."""
    return f"{random.getrandbits(128):032x}"


def new_id(prefix: str) -> str:
    """A fresh id such as ``offer-3f2a...`` that satisfies :data:`ID_PATTERN`."""
    return f"{prefix}-{unique_hex()[:16]}"


MAX_SECONDS: Final = 365 * 24 * 3600.0
"""The longest duration any message may name (a decline filter, a grace period): a year."""
MAX_WEIGHT: Final = 1e6
"""Weights are relative: a million to one is as far apart as two frameworks need to be."""
MAX_PRIORITY: Final = 1_000_000

MAX_BATCH: Final = 256
"""Items in one batch message (updates, acknowledgements, grants, recoveries)."""


class _Frozen(BaseModel):
    # No inf or nan anywhere: an agent's `mem: Infinity` made the master's accounting raise in its sweep.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Message(_Frozen):
    """The envelope every message shares."""

    type: str
    version: int = PROTOCOL_VERSION
    message_id: str = Field(default_factory=lambda: unique_hex(), min_length=1, max_length=64)
    correlation_id: str | None = Field(default=None, max_length=64)


def is_valid_id(value: str) -> bool:
    """Whether ``value`` may serve as an id."""
    return bool(_ID_RE.match(value))
