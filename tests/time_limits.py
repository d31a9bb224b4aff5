"""A pytest plugin: every async test's time limit, kept inside its event loop.

pytest-timeout raises from a SIGALRM handler; uvloop runs Python signal handlers inside its own callbacks
and only logs what they raise, so under uvloop that limit never ended a test (a hung fault test ran over
20 minutes under a 400 s limit). This plugin cancels the test at its deadline instead, which fails it
with its stack and lets its clusters stop; pytest-timeout stays as the backstop for everything else.
Loaded by ``tests/conftest.py`` (``pytest_plugins``); ``tests/unit/plugins/test_time_limits.py`` checks it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Iterator
from typing import Any

import pytest

REPORT_SHARE = 0.05
"""Share of an async test's limit kept back for reporting its failure, before pytest-timeout's alarm."""
REPORT_MIN_S = 2.0
"""At least this long: on a loaded machine, cancelling and reporting a hung 2 s probe outlasted the 0.1 s
that a 95 % share left it (CI, 2026-11-24)."""

_ALARM = pytest.StashKey[tuple[float, float]]()


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """Keep the limit pytest-timeout worked out for the item (marker, option, ini or environment),
    and when its timer starts: before set-up, unless the limit is ``func_only``.

    Returns nothing, so pytest-timeout goes on to set its own timer.
    """
    item.stash[_ALARM] = (time.monotonic(), settings.timeout)


def _report_margin(limit: float) -> float:
    return min(max(limit * REPORT_SHARE, REPORT_MIN_S), limit / 2)


# Inside pytest-timeout's own wrapper (trylast), so that even a func_only limit is known here.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """An async test's time limit, kept inside its event loop.

    pytest-timeout raises from a SIGALRM handler; uvloop runs Python signal handlers inside its own
    callbacks and only logs what they raise, so under uvloop that limit never ended a test (a hung
    fault test ran over 20 minutes under a 400 s limit). Cancelling the test at the deadline fails it
    with its stack and lets its clusters stop; pytest-timeout stays as the backstop for everything else.
    """
    alarm = item.stash.get(_ALARM, None)
    test = getattr(item, "obj", None)
    if alarm is None or not inspect.iscoroutinefunction(test):
        return (yield)
    started, limit = alarm
    margin = _report_margin(limit)

    @functools.wraps(test)
    async def bounded(*args: object, **kwargs: object) -> object:
        # The alarm counts from before set-up; the failure must be reported before it fires, since
        # pytest-timeout's exception raised inside pytest's reporting is an INTERNALERROR that ends the run.
        deadline = asyncio.timeout(max(started + limit - margin - time.monotonic(), 0.0))
        try:
            async with deadline:
                return await test(*args, **kwargs)
        except TimeoutError as exc:
            if deadline.expired():
                raise TimeoutError(
                    f"the test ran into its time limit ({limit:g} s, less {margin:g} s kept to report it)"
                ) from exc
            raise

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(item, "obj", bounded)
        return (yield)
