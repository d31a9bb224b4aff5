"""A service's own principal, read from the broker user it logs in as, and the refusal of ``guest``."""

from __future__ import annotations

from meseta.sdk import wire
from meseta.sdk._nodes import split_urls
from meseta.sdk.bus import user_of


class PrincipalError(ValueError):
    """A service was given a broker user it must not run as."""


def own_identity(service: str, kind: str, amqp_url: str, dev: bool) -> wire.Identity | None:
    """The principal a service runs as; None in development mode, where nothing is checked.

    Outside development mode the broker's default account is refused: with it every process (every
    framework and executor too) may do anything, so nothing could be enforced.
    """
    user = user_of(split_urls(amqp_url)[0])  # every node's URL logs in as the same user
    if dev:
        return None
    if user == wire.DEV_USER:
        raise PrincipalError(
            f"the {service} refuses to run as the broker's default account {wire.DEV_USER!r} outside "
            f"development mode: provision the cluster's users (`meseta users provision`) and give it "
            f"the {kind} user's URL, or pass --dev for a development cluster (no tenant boundaries)"
        )
    identity = wire.identify(user)
    if identity is None or identity.kind != kind:
        raise PrincipalError(
            f"the {service} must log in as a {kind} user (<prefix>.{kind}"
            f"{'.<name>' if kind in ('agent', 'executors', 'framework') else ''}), not {user!r}"
        )
    return identity
