"""The real tick against each real database: threads, lost and missing
connections, large values, the longest name and names a collation confuses.

Every test runs on SQLite, PostgreSQL and MariaDB (DUMBWAITER_TEST_DATABASE);
only the tests of a server dropping the connection have no SQLite form. Values
are read back with dumbwaiter's own readers in the test process, on a
connection of its own; runs are counted in marker files.
"""

from __future__ import annotations

import hashlib
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.db import connection

import dumbwaiter
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.specs import MAX_NAME_LENGTH
from tests.conftest import Children, runs_in

pytestmark = pytest.mark.subprocess

# With characters of 2 to 4 UTF-8 bytes, as utf8mb4 columns have to hold.
LONGEST_NAME = ("long-ß-€-😀-" * 20)[:MAX_NAME_LENGTH]
FIVE_MB = 5 * 1024 * 1024


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def started(path: Path) -> int:
    return sum(line.startswith("start ") for line in lines(path))


def ended(path: Path) -> int:
    return sum(line.startswith("end ") for line in lines(path))


def digest(value: bytes | str) -> str:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()


def idle_limit_of_1s() -> dict[str, str]:
    """Child environment in which the server closes sessions idle for 1 s."""
    if connection.vendor == "mysql":
        return {"DUMBWAITER_TEST_INIT_COMMAND": "SET SESSION wait_timeout = 1"}
    return {"PGOPTIONS": "-c idle_session_timeout=1000"}


def snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every column of every row of dumbwaiter's tables."""

    def rows(model: Any) -> list[tuple[Any, ...]]:
        names = [f.attname for f in model._meta.concrete_fields]
        return [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
            for row in model.objects.order_by("pk").values_list(*names)
        ]

    return rows(FunctionState), rows(HistoryEntry)


def test_slow_function_does_not_delay_another_in_the_same_tick(
    children: Children, marker, tmp_path: Path, settings
) -> None:
    """In a threaded tick a fast function's value is stored and readable while
    a slow one started before it is still running."""
    runs = marker()
    release = tmp_path / "release"
    # Names sort in run order, so the slow function is handed out first.
    functions = [
        {
            "function": "tests.functions.span",
            "name": "a-slow",
            "kwargs": {"marker": str(runs), "release": str(release), "value": "s"},
        },
        {
            "function": "tests.functions.constant",
            "name": "b-fast",
            "kwargs": {"value": "f"},
        },
    ]
    settings.DUMBWAITER_FUNCTION_LIST = functions
    tick = children.start(
        functions, "--once", extra_env={"DUMBWAITER_TEST_THREADED": "1"}
    )

    wait_until(lambda: dumbwaiter.get_value("b-fast") == "f", "the fast value")
    assert (started(runs), ended(runs)) == (1, 0)
    assert FunctionState.objects.get(name="a-slow").status == Status.RUNNING
    assert dumbwaiter.get_value("a-slow") is None
    assert tick.poll() is None

    release.touch()
    out, err = tick.communicate(timeout=60)
    assert tick.returncode == 0, err
    assert (out, err) == ("", "")
    assert dumbwaiter.get_value("a-slow") == "s"


def test_result_is_stored_after_the_connection_dies_during_a_run(
    children: Children, marker, tmp_path: Path, settings
) -> None:
    """The tick's connection is lost while its function runs (MariaDB drops it
    after wait_timeout, PostgreSQL has it terminated); the result is stored
    anyway and the tick exits 0."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server connection that could be lost")
    runs = marker()
    release = tmp_path / "release"
    functions = [
        {
            "function": "tests.functions.span",
            "name": "patient",
            "kwargs": {"marker": str(runs), "release": str(release), "value": "kept"},
        }
    ]
    if connection.vendor == "mysql":
        extra = {"DUMBWAITER_TEST_INIT_COMMAND": "SET SESSION wait_timeout = 2"}
        sessions = "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = DATABASE()"
        with connection.cursor() as cursor:
            cursor.execute(sessions)
            before = {row[0] for row in cursor.fetchall()}
    else:
        application_name = f"dumbwaiter-test-{uuid.uuid4().hex}"
        extra = {"PGAPPNAME": application_name}
    tick = children.start(functions, "--once", extra_env=extra)
    wait_until(lambda: started(runs) == 1, "the function to start")

    if connection.vendor == "mysql":

        def tick_disconnected() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(sessions)
                return {row[0] for row in cursor.fetchall()} <= before

        wait_until(tick_disconnected, "MariaDB to drop the idle tick's connection")
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                [application_name],
            )
            assert [row[0] for row in cursor.fetchall()] == [True]
    assert tick.poll() is None

    release.touch()
    out, err = tick.communicate(timeout=60)
    assert tick.returncode == 0, err
    assert out == ""
    settings.DUMBWAITER_FUNCTION_LIST = functions
    assert dumbwaiter.get_value("patient") == "kept"
    state = FunctionState.objects.get(name="patient")
    assert state.status == Status.SUCCEEDED
    assert state.lease_token is None
    assert HistoryEntry.objects.filter(name="patient").count() == 1
    assert (started(runs), ended(runs)) == (1, 1)


def test_unreachable_database_exits_3_with_one_line(
    children: Children, marker, tmp_path: Path
) -> None:
    """With the database out of reach the tick exits 3, says so on one line of
    stderr and runs nothing; the real database is left as it was."""
    runs = marker()
    functions = [
        {
            "function": "tests.functions.mark",
            "name": "stranded",
            "kwargs": {"marker": str(runs)},
        }
    ]
    FunctionState.objects.create(name="stranded")
    before = snapshot()
    if connection.vendor == "postgresql":
        extra = {"PGPORT": "1"}
    elif connection.vendor == "mysql":
        extra = {"MYSQL_PORT": "1"}
    else:
        missing = tmp_path / "no-such-directory" / "db.sqlite3"
        extra = {"DUMBWAITER_TEST_DB_NAME": str(missing)}

    result = children.run(functions, "--once", extra_env=extra)

    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "database" in result.stderr
    assert "Traceback" not in result.stderr
    assert runs_in(runs) == 0
    assert snapshot() == before


def test_five_megabyte_values_and_the_longest_name_round_trip(
    children: Children, tmp_path: Path, settings
) -> None:
    """5 MB of random bytes (under a name of the maximum length) and a 5 MB
    str come back from the database exactly as the functions returned them."""
    raw_copy = tmp_path / "raw.bin"
    text_copy = tmp_path / "text.txt"
    functions = [
        {
            "function": "tests.functions.random_bytes",
            "name": LONGEST_NAME,
            "kwargs": {"size": FIVE_MB, "copy_to": str(raw_copy)},
        },
        {
            "function": "tests.functions.random_text",
            "name": "big-text",
            # 2.5 UTF-8 bytes a character on average.
            "kwargs": {"length": FIVE_MB * 2 // 5, "copy_to": str(text_copy)},
        },
    ]
    assert len(LONGEST_NAME) == MAX_NAME_LENGTH
    assert len(LONGEST_NAME.encode("utf-8")) > MAX_NAME_LENGTH

    result = children.run(functions, "--once")

    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    settings.DUMBWAITER_FUNCTION_LIST = functions
    raw = dumbwaiter.get_value(LONGEST_NAME)
    assert isinstance(raw, bytes) and len(raw) == FIVE_MB
    assert digest(raw) == digest(raw_copy.read_bytes())
    text = dumbwaiter.get_value("big-text")
    assert isinstance(text, str)
    assert digest(text) == digest(text_copy.read_text(encoding="utf-8"))
    assert len(text.encode("utf-8")) > 4 * 1024 * 1024
    [past] = dumbwaiter.get_history(LONGEST_NAME)
    assert digest(past.value) == digest(raw)
    assert sorted(FunctionState.objects.values_list("name", flat=True)) == sorted(
        ["big-text", LONGEST_NAME]
    )
    assert HistoryEntry.objects.filter(name=LONGEST_NAME).count() == 1


def test_name_one_character_too_long_is_refused_not_truncated(
    children: Children, marker, settings
) -> None:
    """A 192-character name is check error dumbwaiter.E006, and the tick exits 2
    without running anything or writing a row."""
    runs = marker()
    too_long = LONGEST_NAME + "x"
    functions = [
        {
            "function": "tests.functions.mark",
            "name": too_long,
            "kwargs": {"marker": str(runs)},
        },
        {
            "function": "tests.functions.mark",
            "name": "innocent",
            "kwargs": {"marker": str(runs)},
        },
    ]
    settings.DUMBWAITER_FUNCTION_LIST = functions
    errors = [m for m in checks.run_checks() if m.id == "dumbwaiter.E006"]
    assert len(errors) == 1
    assert errors[0].level == checks.ERROR

    result = children.run(functions, "--once")

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "dumbwaiter.E006" in result.stderr
    assert runs_in(runs) == 0
    assert not FunctionState.objects.exists()
    assert not HistoryEntry.objects.exists()


def test_threaded_tick_with_twenty_functions_stores_every_value(
    children: Children, marker, settings
) -> None:
    """20 due functions in one threaded tick, half of them querying dumbwaiter's
    table from their worker threads: all 20 values are stored, exit 0, and the
    database is never reported locked."""
    runs = marker()
    functions: list[dict[str, Any]] = []
    for index in range(20):
        if index % 2:
            entry = {
                "function": "tests.functions.count_states",
                "kwargs": {"repeat": 3, "sleep": 0.05},
            }
        else:
            entry = {
                "function": "tests.functions.mark",
                "kwargs": {"marker": str(runs), "sleep": 0.2, "value": index},
            }
        functions.append({"name": f"job-{index:02}", **entry})

    result = children.run(
        functions, "--once", extra_env={"DUMBWAITER_TEST_THREADED": "1"}
    )

    assert "database is locked" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert runs_in(runs) == 10
    settings.DUMBWAITER_FUNCTION_LIST = functions
    values = [dumbwaiter.get_value(f"job-{index:02}") for index in range(20)]
    assert values == [20 if index % 2 else index for index in range(20)]
    assert set(FunctionState.objects.values_list("status", flat=True)) == {
        Status.SUCCEEDED
    }
    assert HistoryEntry.objects.count() == 20


def test_looping_tick_survives_a_connection_dropped_between_ticks(
    children: Children, marker
) -> None:
    """Without --once the command sleeps between ticks; a server that closes
    idle sessions (MariaDB's wait_timeout, PostgreSQL's idle_session_timeout)
    drops the connection meanwhile, and the next tick reconnects."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server connection that could be lost")
    runs = marker()
    functions = [
        {
            "function": "tests.functions.mark",
            "name": "steady",
            "frequency": 2,
            "kwargs": {"marker": str(runs)},
        }
    ]

    result = children.run(functions, "--for", "7", extra_env=idle_limit_of_1s())

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    # Every tick after the first slept about 2 s, twice the idle limit.
    assert runs_in(runs) >= 2


def test_run_dumbwaiter_recovers_from_a_connection_dropped_between_ticks(
    children: Children, marker
) -> None:
    """The foreground loop keeps running the function after the server closed
    its idle connection, and stops cleanly on SIGTERM."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server connection that could be lost")
    runs = marker()
    functions = [
        {
            "function": "tests.functions.mark",
            "name": "steady",
            "frequency": 2,
            "kwargs": {"marker": str(runs)},
        }
    ]
    loop = children.start(
        functions, command="run_dumbwaiter", extra_env=idle_limit_of_1s()
    )
    # Three runs take about 4 s; the bound only keeps a hang from lasting.
    deadline = time.monotonic() + 30
    while runs_in(runs) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    loop.send_signal(signal.SIGTERM)
    _, err = loop.communicate(timeout=60)

    assert loop.returncode == 0, err
    assert runs_in(runs) >= 3, err


@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("orders-total", "Orders-Total"),
        ("orders-total", "orders-total "),
        ("orders-total", "orders-totál"),
        ("orders-😀", "orders-😁"),
    ],
    ids=["case", "trailing-space", "accent", "emoji"],
)
def test_names_that_differ_only_for_the_collation_never_share_a_value(
    children: Children, settings, name: str, other: str
) -> None:
    """Two names the settings accept as different (they are compared exactly)
    either keep a value each, or are refused with a check error (exit 2); a
    database collation that deems them equal must not make one function's
    value disappear or belong to the other."""
    functions = [
        {"function": "tests.functions.constant", "name": name, "kwargs": {"value": 1}},
        {"function": "tests.functions.constant", "name": other, "kwargs": {"value": 2}},
    ]

    result = children.run(functions, "--once")

    if result.returncode == 2:
        assert "dumbwaiter.E" in result.stderr
        assert not FunctionState.objects.exists()
        return
    assert result.returncode == 0, result.stderr
    settings.DUMBWAITER_FUNCTION_LIST = functions
    values = (dumbwaiter.get_value(name), dumbwaiter.get_value(other))
    assert values == (1, 2)
