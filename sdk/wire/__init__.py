"""Meseta's wire contract: every message, exchange, queue and routing key, in one place.

Both sides import this package and nothing else spells an exchange name. Every message is a frozen
pydantic model with a ``type`` discriminator and a protocol ``version``; :func:`decode` checks the version
and the type before validating, so a sender learns exactly why its message was refused. Framework authors
import ``meseta.sdk.wire`` alone; its modules, one concept each:

- ``base``: the message envelope, ids, the protocol's constants;
- ``topology``: exchanges, routing keys, queues, headers;
- ``resources``: resources and port ranges;
- ``model``: tasks, statuses, offers, filters;
- ``agents``, ``frameworks``, ``allocator``: the messages, by who talks to the master;
- ``channels``: what may travel where; ``codec``: encode and decode;
- ``principals``: who may send what (the broker users of a cluster).
"""

from meseta.sdk.wire.agents import *  # noqa: F403
from meseta.sdk.wire.allocator import *  # noqa: F403
from meseta.sdk.wire.base import *  # noqa: F403
from meseta.sdk.wire.channels import *  # noqa: F403
from meseta.sdk.wire.codec import *  # noqa: F403
from meseta.sdk.wire.frameworks import *  # noqa: F403
from meseta.sdk.wire.model import *  # noqa: F403
from meseta.sdk.wire.principals import *  # noqa: F403
from meseta.sdk.wire.resources import *  # noqa: F403
from meseta.sdk.wire.topology import *  # noqa: F403
