"""The tick step by step, driven in-process with a fake clock.

Worker threads open their own database connections, so every test here runs
with real commits (``transaction=True``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import F
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import dumbwaiter
from dumbwaiter.clock import from_db as as_utc
from dumbwaiter.locks import FunctionLock
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.serializers import get_serializer
from dumbwaiter.storage import seal, unseal
from dumbwaiter.tick import Plan, Tick, TickReport

pytestmark = pytest.mark.django_db(transaction=True)

# The fake clock's start: a whole hour, so a grid point of every frequency
# used here. It lies in the future because the tick times a run's start and
# end with the real clock whatever clock it is given (see the downtime test);
# from the future, a slot always lies after a run's real end.
START = datetime(2100, 1, 1, 12, 0, tzinfo=UTC)

THREADED = pytest.mark.parametrize("threaded", [True, False], ids=["threads", "one"])


class FakeClock:
    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def set(self, offset: float) -> None:
        """Move to ``offset`` seconds after START."""
        self.current = START + timedelta(seconds=offset)


class Calls:
    """A function for the list that counts its runs; returns the run number."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.sleep = sleep
        self.count = 0
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self.count += 1
            number = self.count
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if self.sleep:
                time.sleep(self.sleep)
        finally:
            with self._lock:
                self.active -= 1
        return number


def functions(*entries: dict[str, Any], **extra: Any) -> override_settings:
    return override_settings(DUMBWAITER_FUNCTION_LIST=list(entries), **extra)


@pytest.fixture
def lock_dir(tmp_path: Path) -> str:
    return str(tmp_path / "locks")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tick(lock_dir: str, clock: FakeClock) -> Callable[..., TickReport]:
    """Runs one tick at the fake clock's time; keyword arguments go to Tick."""

    def run(**kwargs: Any) -> TickReport:
        kwargs.setdefault("threaded", True)
        return Tick(lock_dir=lock_dir, now=clock, **kwargs).run()

    return run


def stored_value(name: str) -> Any:
    payload = FunctionState.objects.get(name=name).value
    return None if payload is None else opened(name, payload)


def opened(name: str, payload: bytes | memoryview) -> Any:
    body = unseal(name, bytes(payload))
    assert body is not None, "the stored payload's seal does not verify"
    return get_serializer().deserialize(body)


def history_values(name: str) -> list[Any]:
    return [
        opened(name, value)
        for value in HistoryEntry.objects.for_function(name).values_list(
            "value", flat=True
        )
    ]


@THREADED
def test_first_tick_runs_a_new_function_and_stores_value_and_history(
    tick, threaded: bool
) -> None:
    """A function with no state row runs at once; value, state and history."""
    with functions({"function": "tests.functions.constant", "name": "answer"}):
        report = tick(threaded=threaded)

        assert report.succeeded == ["answer"]
        assert report.failed == report.locked == report.lost_claim == []
        assert report.discarded == report.running_elsewhere == []
        state = FunctionState.objects.get(name="answer")
        assert state.status == Status.SUCCEEDED
        assert stored_value("answer") == 42
        assert dumbwaiter.get_value("answer") == 42
        assert state.version == 1
        assert state.lease_token is None and state.lease_expires is None
        assert as_utc(state.last_started) == START
        assert as_utc(state.next_due) == START + timedelta(seconds=300)
        assert state.duration is not None and state.duration >= 0
        assert state.error_class == ""
        assert history_values("answer") == [42]


def test_a_function_that_is_not_due_is_not_run(tick, clock) -> None:
    """Until the early window of the next slot, later ticks leave it alone."""
    calls = Calls()
    with functions({"function": calls, "name": "minutely", "frequency": 60}):
        tick()
        for offset in (1, 30, 54.999):
            clock.set(offset)
            report = tick()
            assert report.ran == []
            assert report.not_due == 1
        assert calls.count == 1

        clock.set(55)  # 5 s early window of the 12:01 slot
        assert tick().succeeded == ["minutely"]
        assert calls.count == 2
        assert HistoryEntry.objects.filter(name="minutely").count() == 2


@THREADED
def test_ticks_a_minute_apart_with_jitter_run_a_minutely_function_each_time(
    tick, clock, threaded: bool
) -> None:
    """60 ticks 60 s apart, each up to 2 s early or late: 60 runs."""
    calls = Calls()
    rng = random.Random(2024)
    with functions(
        {"function": calls, "name": "minutely", "frequency": 60, "saved": 100}
    ):
        ran = 0
        for minute in range(60):
            clock.set(60 * minute + rng.uniform(-2, 2))
            ran += len(tick(threaded=threaded).succeeded)

    assert ran == 60
    assert calls.count == 60
    assert HistoryEntry.objects.filter(name="minutely").count() == 60


def test_after_downtime_one_run_and_next_due_is_the_next_grid_point(
    tick, clock
) -> None:
    """Ten missed minutes cost one run; the next slot is the next minute
    after the tick's own time, so ticks a second apart do not catch up."""
    calls = Calls()
    with functions({"function": calls, "name": "minutely", "frequency": 60}):
        tick()
        clock.set(600.5)
        assert tick().succeeded == ["minutely"]

        state = FunctionState.objects.get(name="minutely")
        assert as_utc(state.next_due) == START + timedelta(seconds=660)
        for second in range(1, 50):
            clock.set(600.5 + second)
            assert tick().ran == []
        assert calls.count == 2


def test_a_new_function_run_in_the_early_window_counts_for_that_slot(
    tick, clock
) -> None:
    """A first run 1 s before the minute takes the minute's slot: a tick
    0.1 s later does not run it again for that same minute."""
    calls = Calls()
    with functions({"function": calls, "name": "minutely", "frequency": 60}):
        clock.set(-1)
        assert tick().succeeded == ["minutely"]
        clock.set(-0.9)
        report = tick()

    assert report.ran == []
    assert calls.count == 1


@THREADED
def test_a_failure_is_recorded_and_the_last_good_value_stays(
    tick, clock, threaded: bool, caplog
) -> None:
    """Status failed with class, message and traceback; no history row; the
    previous value is still what readers get."""
    with functions({"function": "tests.functions.constant", "name": "calc"}):
        tick(threaded=threaded)
    good = FunctionState.objects.get(name="calc")

    clock.set(300)
    with functions(
        {"function": "tests.functions.fail", "name": "calc", "args": ["kaput"]}
    ):
        with caplog.at_level(logging.ERROR, logger="dumbwaiter.tick"):
            report = tick(threaded=threaded)

        assert report.failed == ["calc"]
        assert report.succeeded == []
        state = FunctionState.objects.get(name="calc")
        assert state.status == Status.FAILED
        assert state.error_class == "ValueError"
        assert state.error_message == "kaput"
        assert state.error_traceback.startswith("Traceback (most recent call last)")
        assert "ValueError: kaput" in state.error_traceback
        assert 'tests/functions.py", line' in state.error_traceback
        assert state.error_at is not None
        assert state.lease_token is None
        assert dumbwaiter.get_value("calc") == 42
        assert stored_value("calc") == 42
        assert state.value_computed_at == good.value_computed_at
        assert history_values("calc") == [42]

    (record,) = [r for r in caplog.records if r.name == "dumbwaiter.tick"]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("failed name=calc duration=")
    assert record.exc_info is not None


def test_a_failure_on_the_first_run_leaves_no_value(tick) -> None:
    """Readers get their default until a run succeeds."""
    with functions({"function": "tests.functions.fail", "name": "calc"}):
        assert tick().failed == ["calc"]
        assert FunctionState.objects.get(name="calc").value is None
        assert dumbwaiter.get_value("calc", default="none yet") == "none yet"
        assert not HistoryEntry.objects.exists()


def test_history_is_trimmed_to_saved_and_never_touches_other_functions(
    tick, clock
) -> None:
    """Each function keeps its own newest ``saved`` rows, however the rows of
    different functions interleave."""
    three, one, many = Calls(), Calls(), Calls()
    with functions(
        {"function": three, "name": "three", "frequency": 60, "saved": 3},
        {"function": one, "name": "one", "frequency": 60, "saved": 1},
        {"function": many, "name": "many", "frequency": 60, "saved": 10},
        # A name that extends another: trimming "three" must not match it.
        {"function": Calls(), "name": "three-more", "frequency": 60, "saved": 10},
    ):
        for minute in range(6):
            clock.set(60 * minute)
            assert len(tick().succeeded) == 4

    assert history_values("three") == [6, 5, 4]
    assert history_values("one") == [6]
    assert history_values("many") == [6, 5, 4, 3, 2, 1]
    assert history_values("three-more") == [6, 5, 4, 3, 2, 1]
    assert HistoryEntry.objects.count() == 16


def test_args_and_kwargs_are_passed(tick) -> None:
    """Positional and keyword arguments from the entry reach the function."""
    with functions(
        {"function": "tests.functions.add", "name": "args", "args": [2, 3]},
        {
            "function": "tests.functions.add",
            "name": "kwargs",
            "kwargs": {"a": 4, "b": 5},
        },
        {
            "function": "tests.functions.add",
            "name": "both",
            "args": (1,),
            "kwargs": {"b": 10},
        },
    ):
        assert sorted(tick().succeeded) == ["args", "both", "kwargs"]

    assert stored_value("args") == 5
    assert stored_value("kwargs") == 9
    assert stored_value("both") == 11


def test_a_value_that_cannot_be_pickled_is_a_failure(tick) -> None:
    """The run fails with the pickling error; nothing is stored."""
    with functions({"function": "tests.functions.not_picklable", "name": "lambda"}):
        report = tick()

    assert report.failed == ["lambda"]
    state = FunctionState.objects.get(name="lambda")
    assert state.status == Status.FAILED
    # The message changed in Python 3.13 ("Can't pickle" became "Can't get").
    assert state.error_class == "AttributeError"
    assert "local object" in state.error_message
    assert "pickle" in state.error_traceback
    assert state.value is None
    assert not HistoryEntry.objects.exists()


def test_a_threaded_tick_runs_functions_at_the_same_time(tick) -> None:
    """Two functions that each wait for the other both finish."""
    barrier = threading.Barrier(2, timeout=5)

    def meet() -> str:
        return str(barrier.wait())

    with functions(
        {"function": meet, "name": "left"}, {"function": meet, "name": "right"}
    ):
        report = tick(threaded=True)

    assert sorted(report.succeeded) == ["left", "right"]
    assert sorted([stored_value("left"), stored_value("right")]) == ["0", "1"]


@pytest.mark.parametrize(
    ("threaded", "max_workers"), [(False, 8), (True, 1)], ids=["unthreaded", "pool-1"]
)
def test_an_unthreaded_tick_runs_functions_one_at_a_time(
    tick, threaded: bool, max_workers: int
) -> None:
    """With threads off, or a pool of one, no two functions overlap."""
    calls = Calls(sleep=0.05)
    with functions(
        *({"function": calls, "name": f"f{i}"} for i in range(4)),
        DUMBWAITER_MAX_WORKERS=max_workers,
    ):
        report = tick(threaded=threaded)

    assert len(report.succeeded) == 4
    assert calls.count == 4
    assert calls.most_active == 1


def test_a_threaded_tick_stays_within_max_workers(tick) -> None:
    """Six functions, a pool of two: never more than two at once, all run."""
    calls = Calls(sleep=0.1)
    with functions(
        *({"function": calls, "name": f"f{i}"} for i in range(6)),
        DUMBWAITER_MAX_WORKERS=2,
    ):
        report = tick(threaded=True)

    assert len(report.succeeded) == 6
    assert calls.most_active == 2


class RacedTick(Tick):
    """Another tick claims every due function between our plan and claim."""

    def plan(self, now: datetime) -> Plan:
        plan = super().plan(now)
        FunctionState.objects.update(version=F("version") + 1)
        return plan


@THREADED
def test_a_lost_claim_is_not_run(lock_dir, clock, threaded: bool, caplog) -> None:
    """The claim's WHERE clause misses: not run, reported, lock released."""
    calls = Calls()
    with (
        functions({"function": calls, "name": "contested"}),
        caplog.at_level(logging.INFO, logger="dumbwaiter.tick"),
    ):
        report = RacedTick(lock_dir=lock_dir, now=clock, threaded=threaded).run()

    assert report.lost_claim == ["contested"]
    assert report.ran == []
    assert calls.count == 0
    state = FunctionState.objects.get(name="contested")
    assert state.status == Status.NEVER_RUN
    assert state.lease_token is None
    assert not HistoryEntry.objects.exists()
    assert "skipped name=contested reason=claimed" in caplog.text
    lock = FunctionLock("contested", lock_dir)
    assert lock.acquire()
    lock.release()


def take_over(name: str) -> Callable[[], str]:
    """A function that, while it runs, has "another tick" take its row over
    and store a newer value."""

    def run() -> str:
        FunctionState.objects.filter(name=name).update(
            lease_token="another-tick",
            value=seal(name, get_serializer().serialize("newer")),
            status=Status.SUCCEEDED,
        )
        return "older"

    return run


@THREADED
def test_a_result_whose_claim_was_taken_over_is_discarded(
    tick, threaded: bool, caplog
) -> None:
    """The late result is dropped and the newer value stands."""
    with functions({"function": take_over("slow"), "name": "slow"}):
        with caplog.at_level(logging.WARNING, logger="dumbwaiter.tick"):
            report = tick(threaded=threaded)

        assert report.discarded == ["slow"]
        assert report.ran == []
        assert dumbwaiter.get_value("slow") == "newer"
        state = FunctionState.objects.get(name="slow")
        assert state.lease_token == "another-tick"
        assert not HistoryEntry.objects.exists()
    assert "discarded name=slow" in caplog.text


def test_a_function_whose_file_lock_is_held_is_skipped(tick, lock_dir, caplog) -> None:
    """Another tick on this host is computing it: skip, log at INFO, no
    failure, no claim; once the lock is free it runs."""
    calls = Calls()
    held = FunctionLock("busy", lock_dir)
    assert held.acquire()
    try:
        with (
            functions({"function": calls, "name": "busy"}),
            caplog.at_level(logging.INFO, logger="dumbwaiter.tick"),
        ):
            report = tick()
    finally:
        held.release()

    assert report.locked == ["busy"]
    assert report.ran == report.failed == report.lost_claim == []
    assert calls.count == 0
    state = FunctionState.objects.get(name="busy")
    assert state.status == Status.NEVER_RUN
    assert state.lease_token is None
    (record,) = [r for r in caplog.records if r.name == "dumbwaiter.tick"]
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("skipped name=busy reason=locked")

    with functions({"function": calls, "name": "busy"}):
        assert tick().succeeded == ["busy"]
    assert calls.count == 1


@THREADED
def test_worker_threads_close_their_database_connections(tick, threaded: bool) -> None:
    """A function that queries the database leaves no connection open."""
    seen: list[Any] = []
    mine = connections[DEFAULT_DB_ALIAS]

    def query() -> int:
        count = FunctionState.objects.count()
        seen.append(connections[DEFAULT_DB_ALIAS])
        return count

    with functions(
        {"function": query, "name": "q1"}, {"function": query, "name": "q2"}
    ):
        assert sorted(tick(threaded=threaded).succeeded) == ["q1", "q2"]

    assert len(seen) == 2
    for wrapper in seen:
        assert wrapper is not mine  # the worker's own connection
        assert wrapper.connection is None


# The plan is one SELECT of every state row. A function's bookkeeping is its
# claim (UPDATE), and for a success the record (UPDATE), the history row
# (INSERT) and the trim (DELETE); for a failure the record only. These
# statements are the same on every vendor.
PLAN = 1
# Claim, record, history row; the trim is one statement per batch.
PER_SUCCESS = 3
PER_FAILURE = 2
# Django logs the BEGIN and COMMIT around each transaction as queries on every
# vendor (SQLite's BEGIN IMMEDIATE included), so totals count transactions too.


CONTROL = {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK"}


def trim_statements(statements: list[str]) -> int:
    """A trim is, per batch, a SELECT of the ids past ``saved`` and, when
    there are any, a DELETE of them."""
    return sum("ROW_NUMBER()" in s or s.startswith("DELETE") for s in statements)


def split(queries: CaptureQueriesContext) -> tuple[list[str], int]:
    """The statements a tick executed, and how many transactions it opened.

    Django logs an ``executemany`` once, as "N times: SQL"; it is counted
    here as the N statements it executed.
    """
    sql = [q["sql"] for q in queries]
    statements = []
    for line in sql:
        if line.split()[0].upper() in CONTROL:
            continue
        times, sep, rest = line.partition(" times: ")
        if sep and times.isdigit():
            statements.extend([rest] * int(times))
        else:
            statements.append(line)
    transactions = sum(s.upper().startswith("BEGIN") for s in sql)
    return statements, transactions


def test_an_idle_tick_is_one_query(tick, clock) -> None:
    """Five functions, none due: the plan's SELECT and nothing else."""
    with functions(*({"function": Calls(), "name": f"f{i}"} for i in range(5))):
        tick()
        clock.set(10)
        with CaptureQueriesContext(connection) as queries:
            report = tick()

    assert report.not_due == 5
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert queries[0]["sql"].startswith("SELECT")


@THREADED
def test_a_busy_tick_costs_a_fixed_number_of_queries_per_function(
    tick, clock, threaded: bool
) -> None:
    """Bookkeeping is 3 statements per succeeding function, 2 per failing one
    and one trim per batch of values, plus the plan; claims share one
    transaction, and records share one per batch of runs that finished
    together."""
    with functions(
        *({"function": Calls(), "name": f"ok{i}", "frequency": 60} for i in range(4)),
        *(
            {"function": "tests.functions.fail", "name": f"bad{i}", "frequency": 60}
            for i in range(2)
        ),
    ):
        tick(threaded=threaded)
        clock.set(60)
        with CaptureQueriesContext(connection) as queries:
            report = tick(threaded=threaded)

    assert len(report.succeeded) == 4 and len(report.failed) == 2
    statements, transactions = split(queries)
    trims = trim_statements(statements)
    assert 1 <= trims <= 2 * 4
    assert len(statements) == PLAN + 4 * PER_SUCCESS + 2 * PER_FAILURE + trims
    # One for the claims, then one per batch of outcomes: how runs batch up
    # depends on how fast they finish against the recording thread.
    assert 2 <= transactions <= 7
    # Batching only ever lowers the round trips: never more than one logged
    # line per statement plus the transaction control around them.
    control = sum(q["sql"].split()[0].upper() in CONTROL for q in queries)
    assert len(queries) - control <= len(statements)


def test_the_first_tick_adds_the_missing_rows_in_one_query(tick) -> None:
    """New functions cost one INSERT for all of their state rows."""
    with (
        functions(*({"function": Calls(), "name": f"f{i}"} for i in range(3))),
        CaptureQueriesContext(connection) as queries,
    ):
        report = tick(threaded=False)

    assert len(report.succeeded) == 3
    statements, transactions = split(queries)
    trims = trim_statements(statements)
    # Nothing to delete yet: the trims are only the SELECTs that look.
    assert not any(s.startswith("DELETE") for s in statements)
    assert 1 <= trims <= 3
    assert len(statements) == PLAN + 1 + 3 * PER_SUCCESS + trims, statements
    # The claims, one to three batches of records, and on Django 5.2 the
    # INSERT (6.0 sends a one-batch bulk_create without a transaction).
    assert 2 <= transactions <= 5


@THREADED
def test_failures_whose_messages_no_database_stores_are_still_recorded(
    tick, threaded: bool
) -> None:
    """A NUL byte, a lone surrogate or an exception whose str() raises is
    recorded as a failure with a cleaned-up message, and the function that
    succeeded beside them keeps its value."""
    with functions(
        {"function": "tests.functions.constant", "name": "good"},
        {"function": "tests.functions.fail_with_nul", "name": "nul"},
        {"function": "tests.functions.fail_with_surrogate", "name": "surrogate"},
        {"function": "tests.functions.fail_unprintable", "name": "unprintable"},
    ):
        report = tick(threaded=threaded)

        assert report.succeeded == ["good"]
        assert sorted(report.failed) == ["nul", "surrogate", "unprintable"]
        assert dumbwaiter.get_value("good") == 42
        states = {s.name: s for s in FunctionState.objects.all()}
    assert all(s.lease_token is None for s in states.values())
    assert states["nul"].status == Status.FAILED
    assert "\x00" not in states["nul"].error_message
    assert "bad header" in states["nul"].error_message
    assert states["surrogate"].error_message.startswith("cannot parse /tmp/")
    assert "could not be read" in states["unprintable"].error_message
