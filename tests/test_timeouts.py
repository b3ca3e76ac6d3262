"""An entry's ``timeout`` and ``retry_after``.

A function still running after its timeout is recorded as timed out and
given up on; the tick (or the loop) does not wait for it. After a failure,
``retry_after`` makes the function due again sooner than its next slot.
"""

from __future__ import annotations

import io
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

import dumbwaiter
from dumbwaiter import clock as dw_clock
from dumbwaiter import signals
from dumbwaiter.exceptions import FunctionTimeout
from dumbwaiter.locks import FunctionLock
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.tick import Loop, Tick, TickReport
from tests.conftest import Children, runs_in

pytestmark = pytest.mark.django_db(transaction=True)

# A whole hour in the future: a grid point of every frequency used here.
START = datetime(2100, 1, 1, 12, 0, tzinfo=UTC)

TIMEOUT_CLASS = "dumbwaiter.exceptions.FunctionTimeout"


class FakeClock:
    def __init__(self) -> None:
        self.current = START

    def __call__(self) -> datetime:
        return self.current

    def set(self, offset: float) -> None:
        """Move to ``offset`` seconds after START."""
        self.current = START + timedelta(seconds=offset)


class Hang:
    """A function that blocks until the test lets it go (or 30 s pass)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self) -> str:
        self.started.set()
        self.release.wait(30)
        self.finished.set()
        return "late result"


class Flaky:
    """Fails while ``failing`` is set; counts its calls."""

    def __init__(self) -> None:
        self.failing = True
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.failing:
            raise ValueError(f"attempt {self.calls} failed")
        return self.calls


def functions(*entries: dict[str, Any], **extra: Any) -> override_settings:
    return override_settings(DUMBWAITER_FUNCTION_LIST=list(entries), **extra)


@pytest.fixture
def lock_dir(tmp_path: Path) -> str:
    return str(tmp_path / "locks")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hang() -> Iterator[Hang]:
    """A hanging function; released at teardown so its thread ends."""
    function = Hang()
    yield function
    function.release.set()
    if function.started.is_set():
        function.finished.wait(10)


@pytest.fixture
def tick(lock_dir: str, clock: FakeClock) -> Callable[..., TickReport]:
    def run(**kwargs: Any) -> TickReport:
        kwargs.setdefault("threaded", True)
        return Tick(lock_dir=lock_dir, now=clock, **kwargs).run()

    return run


def lock_is_free(name: str, lock_dir: str) -> bool:
    lock = FunctionLock(name, lock_dir)
    if not lock.acquire():
        return False
    lock.release()
    return True


def seed_value(name: str, value: Any, lock_dir: str, at: datetime = START) -> None:
    """A successful earlier run of ``name`` that stored ``value``."""
    entry = {"function": "tests.functions.constant", "name": name, "args": [value]}
    with functions(entry):
        report = Tick(lock_dir=lock_dir, now=lambda: at).run()
    assert report.succeeded == [name]


# -- timeout, in process ---------------------------------------------------------


@pytest.mark.parametrize("threaded", [True, False], ids=["threads", "one"])
def test_a_function_past_its_timeout_is_recorded_and_given_up_on(
    clock, lock_dir, hang, threaded: bool, caplog
) -> None:
    """Status timeout with FunctionTimeout; claim and file lock released;
    the previous value still readable; the other function of the tick still
    runs; and tick.run() returns while the function is still running."""
    seed_value("slow", "previous", lock_dir)
    clock.set(300)
    entries = [
        {"function": hang, "name": "slow", "timeout": 0.3},
        {"function": "tests.functions.constant", "name": "z-quick"},
    ]

    with functions(*entries), caplog.at_level(logging.DEBUG):
        tick_ = Tick(lock_dir=lock_dir, now=clock, threaded=threaded)
        report = tick_.run()
        still_running = hang.started.is_set() and not hang.finished.is_set()

        assert still_running
        assert report.failed == ["slow"]
        assert report.timed_out == ["slow"]
        assert report.succeeded == ["z-quick"]
        assert tick_.hung_threads == 1
        state = FunctionState.objects.get(name="slow")
        assert state.status == Status.TIMED_OUT
        assert state.error_class == TIMEOUT_CLASS
        assert "timeout of 0.3s" in state.error_message
        assert dw_clock.from_db(state.error_at) == START + timedelta(seconds=300)
        assert state.lease_token is None and state.lease_expires is None
        assert lock_is_free("slow", lock_dir)
        assert dumbwaiter.get_value("slow") == "previous"
        result = dumbwaiter.get_result("slow")
        assert result.status == Status.TIMED_OUT
        assert result.error is not None
        assert result.error.exception_class == TIMEOUT_CLASS
        assert result.computed_at == START

        timeouts = [
            r
            for r in caplog.records
            if r.levelno >= logging.ERROR and "name=slow" in r.getMessage()
        ]
        assert len(timeouts) == 1
        assert "timed out" in timeouts[0].getMessage()

        # Once the abandoned call returns at last, its result is dropped.
        hang.release.set()
        assert hang.finished.wait(10)
        for thread in threading.enumerate():
            if thread.name.startswith("dumbwaiter:"):
                thread.join(10)
        assert dumbwaiter.get_value("slow") == "previous"
        assert FunctionState.objects.get(name="slow").status == Status.TIMED_OUT
        assert HistoryEntry.objects.filter(name="slow").count() == 1


def test_a_function_within_its_timeout_succeeds(tick) -> None:
    """A timeout that is not reached changes nothing."""
    entries = [
        {
            "function": "tests.functions.constant",
            "name": "quick",
            "timeout": 10,
            "args": ["done"],
        }
    ]
    with functions(*entries):
        tick_report = tick()
        assert tick_report.succeeded == ["quick"]
        assert tick_report.timed_out == []
        assert dumbwaiter.get_value("quick") == "done"


def test_a_timeout_sends_run_failed_with_timed_out(tick, hang) -> None:
    """run_failed: timed_out True and a FunctionTimeout; no value_stored."""
    failed: list[dict[str, Any]] = []
    stored: list[dict[str, Any]] = []

    def on_failed(sender: Any, **kwargs: Any) -> None:
        failed.append(kwargs)

    def on_stored(sender: Any, **kwargs: Any) -> None:
        stored.append(kwargs)

    signals.run_failed.connect(on_failed, weak=False)
    signals.value_stored.connect(on_stored, weak=False)
    try:
        with functions({"function": hang, "name": "slow", "timeout": 0.2}):
            tick()
    finally:
        signals.run_failed.disconnect(on_failed)
        signals.value_stored.disconnect(on_stored)

    (call,) = failed
    assert call["name"] == "slow"
    assert call["timed_out"] is True
    assert isinstance(call["error"], FunctionTimeout)
    assert stored == []


def test_timed_out_functions_fail_the_status_check(hang, lock_dir) -> None:
    """dumbwaiter_status --check names it, even with a fresh old value."""
    entries = [{"function": hang, "name": "slow", "timeout": 0.2, "frequency": 60}]
    now = dw_clock.now()
    seed_value("slow", "previous", lock_dir, at=now)
    FunctionState.objects.filter(name="slow").update(next_due=None)
    with functions(*entries, DUMBWAITER_LOCK_DIR=lock_dir):
        report = Tick(lock_dir=lock_dir, now=lambda: now).run()
        assert report.timed_out == ["slow"]
        with pytest.raises(CommandError) as raised:
            call_command("dumbwaiter_status", "--check", stdout=io.StringIO())

    assert raised.value.returncode == 1
    assert "slow: last run timed out" in str(raised.value)


def test_the_loop_stops_after_a_timeout(lock_dir, hang) -> None:
    """Loop: after a tick that gave up on a function, no further tick starts
    (the abandoned call must not run twice at once)."""
    entries = [{"function": hang, "name": "slow", "timeout": 0.2, "frequency": 1}]
    with functions(*entries):
        loop = Loop(
            lambda: Tick(lock_dir=lock_dir),
            stop=threading.Event(),
            deadline=time.monotonic() + 30,
        )
        reports = loop.run()

    assert loop.stopped_for_hung_thread is True
    assert len(reports) == 1
    assert reports[0].timed_out == ["slow"]


def test_the_loop_goes_on_without_a_timeout(lock_dir) -> None:
    """The same loop with a quick function keeps ticking until its deadline."""
    entries = [
        {
            "function": "tests.functions.constant",
            "name": "quick",
            "timeout": 5,
            "frequency": 0.2,
        }
    ]
    with functions(*entries):
        loop = Loop(
            lambda: Tick(lock_dir=lock_dir),
            stop=threading.Event(),
            deadline=time.monotonic() + 2,
        )
        reports = loop.run()

    assert loop.stopped_for_hung_thread is False
    assert len(reports) >= 2
    assert all(report.failed == [] for report in reports)


# -- timeout, the real commands ----------------------------------------------------


def sleeper(name: str, runs: Path, **entry: Any) -> dict[str, Any]:
    """tests.functions.mark sleeping 60 s, logging its start to ``runs``."""
    return {
        "function": "tests.functions.mark",
        "name": name,
        "kwargs": {"marker": str(runs), "sleep": 60},
        **entry,
    }


@pytest.mark.subprocess
def test_once_exits_1_soon_after_the_timeout(children: Children, marker) -> None:
    """A function sleeping 60 s with timeout 1: dumbwaiter_tick --once exits
    1 long before the function would end; the row is released, the file
    lock free, the previous value still readable."""
    runs = marker()
    seed_value("slow", "previous", str(children.lock_dir), at=dw_clock.now())
    FunctionState.objects.filter(name="slow").update(next_due=None)

    try:
        result = children.run(
            [sleeper("slow", runs, timeout=1, frequency=60)], "--once", timeout=30
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the tick did not give up on the function: {error!r}")

    assert result.returncode == 1, result.stderr
    assert "timed out name=slow" in result.stderr
    assert "1 function(s) failed: slow" in result.stderr
    assert runs_in(runs) == 1
    state = FunctionState.objects.get(name="slow")
    assert state.status == Status.TIMED_OUT
    assert state.error_class == TIMEOUT_CLASS
    assert state.lease_token is None
    assert lock_is_free("slow", str(children.lock_dir))
    with functions(sleeper("slow", runs)):
        assert dumbwaiter.get_value("slow") == "previous"


@pytest.mark.subprocess
def test_for_ends_the_process_after_a_timeout(children: Children, marker) -> None:
    """dumbwaiter_tick --for 10 with a due-every-second function that times
    out: it is started once, and the process exits 1 instead of ticking on."""
    runs = marker()

    result = children.run(
        [sleeper("slow", runs, timeout=1, frequency=1)], "--for", "10", timeout=60
    )

    assert result.returncode == 1, result.stderr
    assert runs_in(runs) == 1
    assert "stopping" in result.stderr
    assert "1 function(s) failed: slow" in result.stderr
    assert FunctionState.objects.get(name="slow").status == Status.TIMED_OUT


@pytest.mark.subprocess
def test_run_dumbwaiter_exits_1_after_a_timeout(children: Children, marker) -> None:
    """The foreground loop ends with exit 1 and says why."""
    runs = marker()

    result = children.run(
        [sleeper("slow", runs, timeout=1, frequency=1)],
        command="run_dumbwaiter",
        timeout=60,
    )

    assert result.returncode == 1, result.stderr
    assert "a function timed out and may still be running" in result.stderr
    assert runs_in(runs) == 1
    state = FunctionState.objects.get(name="slow")
    assert state.status == Status.TIMED_OUT
    assert state.lease_token is None


# -- retry_after ---------------------------------------------------------------------


def retrying(flaky: Flaky, **entry: Any) -> override_settings:
    return functions({"function": flaky, "name": "flaky", **entry})


def next_due() -> datetime | None:
    return dw_clock.from_db(FunctionState.objects.get(name="flaky").next_due)


def test_after_a_failure_retry_after_makes_it_due_again_sooner(tick, clock) -> None:
    """Hourly with retry_after 60: a failure at 12:00 is due at 12:01:00;
    ticks before that leave it alone, the tick at 12:01 runs it again."""
    flaky = Flaky()
    with retrying(flaky, frequency=3600, retry_after=60):
        assert tick().failed == ["flaky"]
        assert next_due() == START + timedelta(seconds=60)

        for offset in (1, 30, 50):
            clock.set(offset)
            report = tick()
            assert report.ran == []
            assert report.not_due == 1
        assert flaky.calls == 1

        clock.set(60)
        assert tick().failed == ["flaky"]
        assert flaky.calls == 2


def test_retries_continue_until_a_success_then_the_schedule_resumes(
    tick, clock
) -> None:
    """Each failure is retried retry_after later; after a success the
    function waits for its next slot, not retry_after."""
    flaky = Flaky()
    with retrying(flaky, frequency=3600, retry_after=60):
        tick()
        clock.set(60)
        tick()
        assert next_due() == START + timedelta(seconds=120)

        flaky.failing = False
        clock.set(120)
        assert tick().succeeded == ["flaky"]
        assert next_due() == START + timedelta(seconds=3600)

        clock.set(180)
        assert tick().ran == []
        assert flaky.calls == 3
        assert dumbwaiter.get_value("flaky") == 3


def test_without_retry_after_a_failure_waits_for_the_next_slot(tick, clock) -> None:
    """The default: a failed run is due again at its next slot."""
    flaky = Flaky()
    with retrying(flaky, frequency=3600):
        tick()
        assert next_due() == START + timedelta(seconds=3600)
        clock.set(60)
        assert tick().ran == []
        assert flaky.calls == 1


def test_retry_after_never_delays_the_next_slot(tick, clock) -> None:
    """A retry_after longer than the period: the next slot comes first."""
    flaky = Flaky()
    with retrying(flaky, frequency=60, retry_after=600):
        tick()
        assert next_due() == START + timedelta(seconds=60)
        clock.set(60)
        assert tick().failed == ["flaky"]
        assert flaky.calls == 2


def test_retry_after_does_not_apply_to_a_success(tick, clock) -> None:
    """A successful run is due at its next slot even with retry_after."""
    flaky = Flaky()
    flaky.failing = False
    with retrying(flaky, frequency=3600, retry_after=60):
        assert tick().succeeded == ["flaky"]
        assert next_due() == START + timedelta(seconds=3600)
        clock.set(60)
        assert tick().ran == []


def test_retry_after_applies_to_a_timeout(tick, clock, hang) -> None:
    """A timed-out run is retried retry_after after it was given up on."""
    with functions(
        {
            "function": hang,
            "name": "slow",
            "frequency": 3600,
            "timeout": 0.2,
            "retry_after": 30,
        }
    ):
        assert tick().timed_out == ["slow"]

    state = FunctionState.objects.get(name="slow")
    assert dw_clock.from_db(state.next_due) == START + timedelta(seconds=30)
