"""The management commands, as cron, systemd and a terminal run them."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from dumbwaiter import clock
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from tests.conftest import Children, runs_in

pytestmark = [pytest.mark.subprocess, pytest.mark.django_db(transaction=True)]


def marked(name: str, runs: Path, **entry: Any) -> dict[str, Any]:
    """An entry running tests.functions.mark, which logs each run to ``runs``."""
    kwargs = {"marker": str(runs), **entry.pop("kwargs", {})}
    return {"function": "tests.functions.mark", "name": name, "kwargs": kwargs, **entry}


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting")
        time.sleep(0.05)


def test_once_succeeds_silently(children: Children, marker) -> None:
    """Exit 0 with nothing on stdout or stderr: cron mails no one."""
    runs = marker()
    functions = [
        marked("first", runs),
        {"function": "tests.functions.add", "name": "sum", "args": [20, 22]},
    ]

    result = children.run(functions, "--once")

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""
    assert runs_in(runs) == 1
    states = {s.name: s for s in FunctionState.objects.all()}
    assert {n: s.status for n, s in states.items()} == {
        "first": Status.SUCCEEDED,
        "sum": Status.SUCCEEDED,
    }
    assert HistoryEntry.objects.count() == 2


def test_once_exits_1_naming_the_failed_function(children: Children, marker) -> None:
    """A failing function: exit 1, its name on stderr; the others still run."""
    runs = marker()
    functions = [
        marked("fine", runs),
        {"function": "tests.functions.fail", "name": "broken-report"},
    ]

    result = children.run(functions, "--once")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "CommandError: 1 function(s) failed: broken-report" in result.stderr
    assert "failed name=broken-report" in result.stderr
    assert "ValueError: boom" in result.stderr
    assert runs_in(runs) == 1
    assert FunctionState.objects.get(name="fine").status == Status.SUCCEEDED
    assert FunctionState.objects.get(name="broken-report").status == Status.FAILED


def test_once_treats_system_exit_from_a_function_as_a_failure(
    children: Children,
) -> None:
    """A function that raises SystemExit (a BaseException, not an Exception)
    fails like any other: recorded, exit 1; the tick does not wait forever
    for an outcome that never comes."""
    functions = [
        {"function": "tests.functions.exit_early", "name": "quitter"},
        {"function": "tests.functions.constant", "name": "fine"},
    ]
    try:
        result = children.run(functions, "--once", timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("the tick was still running 15 s after the function exited")

    assert result.returncode == 1, result.stderr
    assert "failed: quitter" in result.stderr
    state = FunctionState.objects.get(name="quitter")
    assert state.status == Status.FAILED
    assert state.error_class == "SystemExit"
    assert state.lease_token is None
    assert FunctionState.objects.get(name="fine").status == Status.SUCCEEDED


def test_verbosity_2_logs_each_run_with_its_duration(
    children: Children, marker
) -> None:
    """-v 2 prints one INFO line per function run, with its duration."""
    runs = marker()
    functions = [marked("alpha", runs), marked("beta", runs)]

    result = children.run(functions, "--once", "-v", "2")

    assert result.returncode == 0, result.stderr
    for name in ("alpha", "beta"):
        line = rf"^INFO dumbwaiter\.tick: ran name={name} duration=\d+\.\d{{3}}s$"
        assert re.search(line, result.stderr, re.MULTILINE), result.stderr


def test_once_with_nothing_due_is_silent_and_runs_nothing(
    children: Children, marker
) -> None:
    """Every function ran recently: exit 0, no output, no run."""
    runs = marker()
    FunctionState.objects.create(
        name="later", next_due=clock.to_db(clock.now() + timedelta(hours=1))
    )

    result = children.run([marked("later", runs, frequency=3600)], "--once")

    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    assert runs_in(runs) == 0
    assert FunctionState.objects.get(name="later").status == Status.NEVER_RUN


def test_for_keeps_ticking_then_exits_by_itself(children: Children, marker) -> None:
    """Without --once, --for 3 runs a 1 s function every second, then stops."""
    runs = marker()

    started = time.monotonic()
    result = children.run(
        [marked("often", runs, frequency=1)], "--for", "3", timeout=30
    )
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    assert 2 <= runs_in(runs) <= 4
    assert HistoryEntry.objects.filter(name="often").count() == runs_in(runs)
    # It kept going for the whole --for, and stopped on its own well before
    # the 30 s safety timeout (Django's start-up is part of the time).
    assert elapsed >= 3


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_run_dumbwaiter_stops_cleanly_on_a_signal(
    children: Children, marker, signum: int
) -> None:
    """The foreground loop stores values, then exits 0 on SIGTERM or Ctrl-C,
    letting a function that is running finish and be recorded first."""
    runs = marker()
    functions = [marked("slow", runs, frequency=3600, kwargs={"sleep": 1.0})]
    process = children.start(functions, command="run_dumbwaiter")

    wait_until(lambda: runs_in(runs) == 1)  # the function is running
    process.send_signal(signum)
    _, err = process.communicate(timeout=15)

    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert runs_in(runs) == 1
    state = FunctionState.objects.get(name="slow")
    assert state.status == Status.SUCCEEDED
    assert state.lease_token is None
    assert HistoryEntry.objects.filter(name="slow").count() == 1


def test_run_dumbwaiter_stops_between_ticks(children: Children, marker) -> None:
    """Once a value is stored and the loop sleeps, SIGTERM ends it with 0."""
    runs = marker()
    process = children.start([marked("quick", runs)], command="run_dumbwaiter")

    wait_until(
        lambda: FunctionState.objects.filter(
            name="quick", status=Status.SUCCEEDED
        ).exists()
    )
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=15)

    assert process.returncode == 0, err
    assert out == err == ""
    assert runs_in(runs) == 1


def test_for_zero_is_an_argument_error(children: Children) -> None:
    """argparse rejects --for 0 with its usual exit code 2 and a message."""
    result = children.run([], "--for", "0")

    assert result.returncode == 2
    assert "argument --for: must be more than 0 seconds" in result.stderr
    assert result.stderr.startswith("usage: ")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be more than 0 seconds"),
        ("-5", "must be more than 0 seconds"),
        ("soon", "'soon' is not a number of seconds"),
        ("nan", "must be more than 0 seconds"),
    ],
)
def test_invalid_for_values_are_rejected(value: str, message: str) -> None:
    """Every value that is not a positive number of seconds is refused."""
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("dumbwaiter_tick", "--for", value)


def test_in_process_once_prints_nothing_and_stores_the_value(tmp_path) -> None:
    """call_command: no output on success at the default verbosity."""
    stdout, stderr = io.StringIO(), io.StringIO()
    entry = {"function": "tests.functions.constant", "name": "answer"}
    with override_settings(
        DUMBWAITER_FUNCTION_LIST=[entry], DUMBWAITER_LOCK_DIR=str(tmp_path)
    ):
        call_command("dumbwaiter_tick", "--once", stdout=stdout, stderr=stderr)

    assert stdout.getvalue() == stderr.getvalue() == ""
    assert FunctionState.objects.get(name="answer").status == Status.SUCCEEDED


def test_in_process_failure_raises_with_exit_code_1(tmp_path) -> None:
    """call_command raises CommandError(returncode=1) naming every failure."""
    entries = [
        {"function": "tests.functions.fail", "name": "zeta"},
        {"function": "tests.functions.fail", "name": "eta"},
        {"function": "tests.functions.constant", "name": "fine"},
    ]
    with (
        override_settings(
            DUMBWAITER_FUNCTION_LIST=entries, DUMBWAITER_LOCK_DIR=str(tmp_path)
        ),
        pytest.raises(CommandError) as raised,
    ):
        call_command("dumbwaiter_tick", "--once", stderr=io.StringIO())

    assert raised.value.returncode == 1
    assert str(raised.value) == "2 function(s) failed: eta, zeta"


@pytest.mark.subprocess
def test_a_lock_directory_that_cannot_be_written_is_a_configuration_error(
    children: Children, tmp_path: Path
) -> None:
    """A lock directory that is a file (or not writable) exits 2 with a
    message naming DUMBWAITER_LOCK_DIR, not a traceback."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = children.run(
        [{"function": "tests.functions.constant", "name": "alpha"}],
        "--once",
        lock_dir=blocker / "locks",
    )

    assert result.returncode == 2, result.stderr
    assert "DUMBWAITER_LOCK_DIR" in result.stderr
    assert "Traceback" not in result.stderr
