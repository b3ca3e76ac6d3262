"""Ticks that overlap on one host, and ticks that die, with real processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dumbwaiter.models import FunctionState, HistoryEntry, Status
from tests.conftest import Children, runs_in

pytestmark = pytest.mark.subprocess


def wait_for_runs(path: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while runs_in(path) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never reached {count} runs")
        time.sleep(0.05)


def test_second_tick_skips_a_function_the_first_is_computing(
    children: Children, marker
) -> None:
    """An overlapping tick exits 0 without running the busy function again."""
    runs = marker()
    functions = [
        {
            "function": "tests.functions.mark",
            "name": "slow",
            "kwargs": {"marker": str(runs), "sleep": 3},
        }
    ]
    first = children.start(functions, "--once")
    wait_for_runs(runs, 1)
    second = children.run(functions, "--once")
    _, err = first.communicate(timeout=60)

    assert second.returncode == 0, second.stderr
    assert second.stdout == "" and second.stderr == ""
    assert first.returncode == 0, err
    assert runs_in(runs) == 1
    assert HistoryEntry.objects.filter(name="slow").count() == 1


def test_killed_tick_leaves_nothing_stuck(children: Children, marker) -> None:
    """After SIGKILL mid-function, the next tick on the host runs it again."""
    runs = marker()
    functions = [
        {
            "function": "tests.functions.mark",
            "name": "victim",
            "kwargs": {"marker": str(runs), "sleep": 30},
        }
    ]
    first = children.start(functions, "--once")
    wait_for_runs(runs, 1)
    assert FunctionState.objects.get(name="victim").status == Status.RUNNING
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)

    quick = [dict(functions[0], kwargs={"marker": str(runs), "sleep": 0})]
    again = children.run(quick, "--once")

    assert again.returncode == 0, again.stderr
    assert runs_in(runs) == 2
    state = FunctionState.objects.get(name="victim")
    assert state.status == Status.SUCCEEDED
    assert state.lease_token is None
    assert state.error_class == "dumbwaiter.exceptions.RunAbandoned"
    assert HistoryEntry.objects.filter(name="victim").count() == 1


def test_a_function_that_kills_its_tick_is_not_retried_forever(
    children: Children, marker
) -> None:
    """A run whose process dies is taken over once; if the retry dies too,
    the next tick records the failure and leaves it for its next slot, and
    the other functions run again."""
    runs = marker("crash")
    good = marker("good")
    functions = [
        {
            "function": "tests.functions.kill_process",
            "name": "crasher",
            "frequency": 3600,
            "kwargs": {"marker": str(runs)},
        },
        {
            "function": "tests.functions.mark",
            "name": "good",
            "frequency": 3600,
            "kwargs": {"marker": str(good)},
        },
    ]
    no_threads = {"DUMBWAITER_TEST_THREADED": "0"}
    first = children.run(functions, "--once", extra_env=no_threads)
    second = children.run(functions, "--once", extra_env=no_threads)
    third = children.run(functions, "--once", extra_env=no_threads)

    assert (first.returncode, second.returncode) == (7, 7)
    assert runs_in(runs) == 2
    assert third.returncode == 1, third.stderr
    assert "abandoned twice name=crasher" in third.stderr
    state = FunctionState.objects.get(name="crasher")
    assert state.status == Status.FAILED
    assert state.lease_token is None
    assert state.error_class == "dumbwaiter.exceptions.RunAbandoned"
    assert FunctionState.objects.get(name="good").status == Status.SUCCEEDED
