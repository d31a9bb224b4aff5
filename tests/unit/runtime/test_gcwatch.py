"""The garbage-collector watch times real collections and logs the long ones."""

from __future__ import annotations

import gc
import logging

import pytest

from meseta.runtime.gcwatch import YOUNG_THRESHOLD, GcWatch


def test_collections_are_timed_and_long_ones_logged(caplog: pytest.LogCaptureFixture) -> None:
    watch = GcWatch(threshold=0.0).install()
    try:
        with caplog.at_level(logging.WARNING, logger="meseta.runtime.gcwatch"):
            gc.collect()
    finally:
        watch.remove()
    assert watch.pauses >= 1 and watch.total > 0 and watch.longest > 0
    assert "garbage collection of generation 2 took" in caplog.text
    before = watch.pauses
    gc.collect()  # removed: no longer counted
    assert watch.pauses == before


def test_short_collections_are_counted_but_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    watch = GcWatch(threshold=3600.0).install()
    try:
        with caplog.at_level(logging.WARNING, logger="meseta.runtime.gcwatch"):
            gc.collect()
    finally:
        watch.remove()
    assert watch.pauses == 0 and watch.total > 0
    assert "garbage collection" not in caplog.text


def test_a_long_full_collection_freezes_its_survivors_until_the_thaw() -> None:
    gc.unfreeze()
    watch = GcWatch(threshold=0.0, amortize=True, thaw_interval=3600.0).install()
    try:
        keep = [[i] for i in range(10_000)]  # long-lived objects, as a master's agents are
        gc.collect()
        assert gc.get_freeze_count() == 0  # not from inside the collector
        watch.tick()
        assert watch.freezes == 1 and gc.get_freeze_count() >= len(keep)
        watch.thaw_interval = 0.0
        watch.tick()  # the periodic thaw gives everything back to the collector
        assert gc.get_freeze_count() == 0
    finally:
        watch.remove()
        gc.unfreeze()


def test_amortizing_spaces_young_collections_out_and_removing_restores_them() -> None:
    before = gc.get_threshold()
    watch = GcWatch(amortize=True).install()
    try:
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD and gc.get_threshold()[1:] == before[1:]
    finally:
        watch.remove()
    assert gc.get_threshold() == before


def test_without_amortizing_nothing_is_frozen() -> None:
    gc.unfreeze()
    watch = GcWatch(threshold=0.0).install()
    try:
        gc.collect()
        watch.tick()
    finally:
        watch.remove()
    assert watch.freezes == 0 and gc.get_freeze_count() == 0


async def test_running_installs_ticks_and_removes() -> None:
    before = gc.get_threshold()
    async with GcWatch(amortize=True).running() as watch:
        assert watch._callback in gc.callbacks and gc.get_threshold()[0] == YOUNG_THRESHOLD
        gc.collect()
    assert watch._callback not in gc.callbacks and gc.get_threshold() == before
    assert watch.total > 0 and "garbage collection:" in watch.summary()
