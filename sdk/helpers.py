"""Offer helpers frameworks share: first-fit packing of pending tasks into an offer."""

from __future__ import annotations

from collections.abc import Iterable

from meseta.sdk.wire import Offer, Resources, TaskInfo


def first_fit(offer: Offer, pending: Iterable[TaskInfo]) -> list[TaskInfo]:
    """The pending tasks, in order, that fit together into the offer (first fit)."""
    left: Resources = offer.resources
    chosen: list[TaskInfo] = []
    for task in pending:
        if task.resources.fits_in(left):
            chosen.append(task)
            left = left - task.resources
    return chosen
