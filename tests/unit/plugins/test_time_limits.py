"""A hung async test fails at its time limit, on the event loop the tests run on (uvloop's)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

PROBE = "MESETA_TIME_LIMIT_PROBE"
SET_UP_S = 1.5


@pytest.mark.skipif(not os.environ.get(PROBE), reason="run by test_a_hung_async_test_fails_at_its_limit")
@pytest.mark.timeout(4)
async def test_hangs() -> None:
    # Busy, as the hung fault test was (offers in, declines out): a sleep loop on purpose.
    while True:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


@pytest.mark.skipif(not os.environ.get(PROBE), reason="run by test_a_hung_async_test_fails_at_its_limit")
@pytest.mark.timeout(timeout=4, func_only=True)
async def test_hangs_under_a_limit_given_by_keyword() -> None:
    await asyncio.Event().wait()


@pytest.fixture
def slow_set_up() -> None:
    time.sleep(SET_UP_S)  # set-up time counts towards the limit: pytest-timeout's alarm is already set


@pytest.mark.skipif(not os.environ.get(PROBE), reason="run by test_a_hung_async_test_fails_at_its_limit")
@pytest.mark.timeout(4)
async def test_hangs_after_a_slow_set_up(slow_set_up: None) -> None:
    await asyncio.Event().wait()


@pytest.mark.skipif(not os.environ.get(PROBE), reason="run by test_a_hung_async_test_fails_at_its_limit")
@pytest.mark.timeout(5)
async def test_its_own_timeout_error_keeps_its_message() -> None:
    await asyncio.wait_for(asyncio.Event().wait(), 0.1)


@pytest.mark.skipif(bool(os.environ.get(PROBE)), reason="the probe run checks only the probes")
def test_a_hung_async_test_fails_at_its_limit(tmp_path: Path) -> None:
    report = tmp_path / "probes.xml"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", __file__],
        env={**os.environ, PROBE: "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stdout
    cases = list(ElementTree.parse(report).iter("testcase"))
    failures = {
        case.get("name"): failure.get("message", "")
        for case in cases
        if (failure := case.find("failure")) is not None
    }
    assert failures.keys() == {
        "test_hangs",
        "test_hangs_under_a_limit_given_by_keyword",
        "test_hangs_after_a_slow_set_up",
        "test_its_own_timeout_error_keeps_its_message",
    }, run.stdout
    # The limit is the one pytest-timeout worked out, however it was given.
    at_limit = "TimeoutError: the test ran into its time limit (4 s, less 2 s kept to report it)"
    assert failures["test_hangs"] == at_limit
    assert failures["test_hangs_under_a_limit_given_by_keyword"] == failures["test_hangs"]
    # The deadline counts from pytest-timeout's alarm, set before set-up, so a slow set-up does not push
    # the failure past the alarm (whose exception, raised while pytest reports, ends the whole run).
    assert failures["test_hangs_after_a_slow_set_up"] == failures["test_hangs"]
    took = {case.get("name"): float(case.get("time", "nan")) for case in cases}
    assert took["test_hangs_after_a_slow_set_up"] < 4, took
    # A TimeoutError the test raises itself is not relabelled as the limit.
    assert "time limit" not in failures["test_its_own_timeout_error_keeps_its_message"]
