"""Query budgets of a tick with 1000 functions, pinned (bench/README.md times them).

Every line Django logs for the tick's connection counts: statements, and the
BEGIN, COMMIT, SAVEPOINT, RELEASE SAVEPOINT and ROLLBACK lines it logs for
transactions. A busy tick may spend a fixed ``TICK_OVERHEAD`` on top of the
per-function budget: the plan's SELECT, the BEGIN and COMMIT of the claim
transaction, and those of one record transaction. Any further transaction
line counts against the per-function budget.

Worker threads and real transactions: ``transaction=True``, as in
test_tick.py, so BEGIN and COMMIT are what production sends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from dumbwaiter.models import FunctionState
from dumbwaiter.tick import Tick, TickReport

pytestmark = pytest.mark.django_db(transaction=True)

FUNCTIONS = 1000
# An idle tick issues exactly this many queries today; the budget is 2.
IDLE_QUERIES = 1
IDLE_BUDGET = 2
PER_FUNCTION_BUDGET = 4
TICK_OVERHEAD = 1 + 2 + 2
# A whole hour in the future (the tick times runs with the real clock; see
# test_tick.py), so a grid point of the hourly frequency used here.
START = datetime(2100, 1, 1, 12, 0, tzinfo=UTC)
TRANSACTION_LINES = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")


def thousand_functions(**extra: Any) -> override_settings:
    entries = [
        {"function": "tests.functions.constant", "name": f"f{i:04d}", "frequency": 3600}
        for i in range(FUNCTIONS)
    ]
    return override_settings(DUMBWAITER_FUNCTION_LIST=entries, **extra)


def tick_at(moment: datetime, lock_dir: Path, threaded: bool = True) -> TickReport:
    return Tick(lock_dir=str(lock_dir), now=lambda: moment, threaded=threaded).run()


def executed(queries: CaptureQueriesContext) -> int:
    """Statements and transaction lines the database executed.

    Django logs an ``executemany`` as one line, "N times: SQL"; it counts
    here as the N statements the database ran, so batching cannot hide work
    from the budget.
    """
    total = 0
    for query in queries:
        times, sep, _ = query["sql"].partition(" times: ")
        total += int(times) if sep and times.isdigit() else 1
    return total


def breakdown(queries: CaptureQueriesContext) -> str:
    """Statements and transaction lines, for the failure message."""
    lines = [q["sql"] for q in queries]
    control = [s for s in lines if s.split()[0].upper() in TRANSACTION_LINES]
    begins = sum(s.upper().startswith("BEGIN") for s in control)
    return (
        f"{len(lines)} logged queries ({executed(queries)} statements executed) "
        f"for {FUNCTIONS} functions: "
        f"{len(lines) - len(control)} statements, {len(control)} transaction "
        f"lines ({begins} transactions); budget "
        f"{PER_FUNCTION_BUDGET * FUNCTIONS + TICK_OVERHEAD}"
    )


def test_an_idle_tick_with_1000_functions_is_one_query(tmp_path: Path) -> None:
    """1000 functions configured, none due: one SELECT of every state row and
    nothing else (the budget is 2; today it is exactly 1)."""
    with thousand_functions():
        first = tick_at(START, tmp_path)
        assert len(first.succeeded) == FUNCTIONS
        with CaptureQueriesContext(connection) as queries:
            report = tick_at(START + timedelta(minutes=10), tmp_path)

    assert report.not_due == FUNCTIONS
    assert report.ran == []
    sql = [q["sql"] for q in queries]
    assert len(sql) <= IDLE_BUDGET, sql
    assert len(sql) == IDLE_QUERIES, sql
    assert sql[0].startswith("SELECT"), sql


@pytest.mark.parametrize("threaded", [True, False], ids=["threads", "one"])
def test_a_busy_tick_with_1000_functions_stays_within_4_queries_each(
    tmp_path: Path, threaded: bool
) -> None:
    """1000 trivial functions, all due: the tick's whole conversation with the
    database, transaction lines included, is at most 4 queries per function
    plus the fixed TICK_OVERHEAD."""
    with thousand_functions():
        first = tick_at(START, tmp_path, threaded)
        assert len(first.succeeded) == FUNCTIONS
        due = START + timedelta(hours=1)
        with CaptureQueriesContext(connection) as queries:
            report = tick_at(due, tmp_path, threaded)

    assert len(report.succeeded) == FUNCTIONS, report
    assert FunctionState.objects.filter(status="ok").count() == FUNCTIONS
    budget = PER_FUNCTION_BUDGET * FUNCTIONS + TICK_OVERHEAD
    assert executed(queries) <= budget, breakdown(queries)
    assert len(queries) <= budget, breakdown(queries)
