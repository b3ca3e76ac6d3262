"""``manage.py dumbwaiter_run NAME...`` and ``dumbwaiter_tick --dry-run``."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import dumbwaiter
from dumbwaiter import clock
from dumbwaiter.locks import FunctionLock
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.serializers import get_serializer
from dumbwaiter.storage import seal
from tests.conftest import Children, runs_in

pytestmark = pytest.mark.django_db(transaction=True)


def marked(name: str, runs: Path, **entry: Any) -> dict[str, Any]:
    """An entry running tests.functions.mark, which logs each run to ``runs``."""
    kwargs = {"marker": str(runs), **entry.pop("kwargs", {})}
    return {"function": "tests.functions.mark", "name": name, "kwargs": kwargs, **entry}


def store(name: str, value: Any, *, at: datetime, **fields: Any) -> FunctionState:
    """A state row as a successful run computed at ``at`` would leave it."""
    values = {
        "status": Status.SUCCEEDED,
        "value": seal(name, get_serializer().serialize(value)),
        "value_computed_at": at,
        "last_started": at,
        "version": 1,
        **fields,
    }
    values = {
        key: clock.to_db(value) if isinstance(value, datetime) else value
        for key, value in values.items()
    }
    state, _ = FunctionState.objects.update_or_create(name=name, defaults=values)
    return state


def run_command(
    command: str, *args: str, functions: list[dict[str, Any]], lock_dir: Path | str
) -> tuple[str, str, int]:
    """Run a command in process: stdout, stderr and the exit code."""
    out, err = io.StringIO(), io.StringIO()
    with override_settings(
        DUMBWAITER_FUNCTION_LIST=functions, DUMBWAITER_LOCK_DIR=str(lock_dir)
    ):
        try:
            call_command(command, *args, stdout=out, stderr=err)
        except CommandError as error:
            err.write(str(error))
            return out.getvalue(), err.getvalue(), error.returncode
    return out.getvalue(), err.getvalue(), 0


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting")
        time.sleep(0.05)


def snapshot() -> list[dict[str, Any]]:
    """Every column of every state and history row."""
    return [
        *FunctionState.objects.order_by("name").values(),
        *HistoryEntry.objects.order_by("id").values(),
    ]


# -- dumbwaiter_run -------------------------------------------------------------


def test_runs_a_function_that_is_not_due_and_stores_its_value(tmp_path, marker) -> None:
    """The named function runs now although its next slot is an hour away;
    its value, status and history are stored as a tick would; a due
    function that was not named is left alone."""
    runs, others = marker("named"), marker("other")
    now = clock.now()
    store(
        "report",
        "old",
        at=now - timedelta(seconds=60),
        next_due=now + timedelta(hours=1),
    )
    functions = [
        marked("report", runs, frequency=7200, kwargs={"value": "new"}),
        marked("other", others),
    ]

    out, err, code = run_command(
        "dumbwaiter_run", "report", functions=functions, lock_dir=tmp_path
    )

    assert code == 0, err
    assert out == "report: ok\n"
    assert runs_in(runs) == 1
    assert runs_in(others) == 0
    assert not FunctionState.objects.filter(name="other").exists()
    state = FunctionState.objects.get(name="report")
    assert state.status == Status.SUCCEEDED
    assert state.version == 2
    assert state.lease_token is None and state.lease_expires is None
    assert clock.from_db(state.value_computed_at) > now
    assert clock.from_db(state.next_due) > clock.from_db(state.last_started)
    with override_settings(DUMBWAITER_FUNCTION_LIST=functions):
        assert dumbwaiter.get_value("report") == "new"
        assert [p.value for p in dumbwaiter.get_history("report")] == ["new"]


def test_runs_several_names_once_each(tmp_path, marker) -> None:
    """Every named function runs once, even when a name is given twice."""
    a, b, c = marker("a"), marker("b"), marker("c")
    functions = [marked("a", a), marked("b", b), marked("c", c)]

    out, err, code = run_command(
        "dumbwaiter_run", "b", "a", "b", functions=functions, lock_dir=tmp_path
    )

    assert code == 0, err
    assert sorted(out.splitlines()) == ["a: ok", "b: ok"]
    assert (runs_in(a), runs_in(b), runs_in(c)) == (1, 1, 0)
    assert HistoryEntry.objects.filter(name="b").count() == 1


def test_a_run_holds_the_file_lock_and_the_claim_while_it_runs(tmp_path) -> None:
    """While the function runs, its row is claimed (status running, a lease
    token, this process as claimant) and its file lock is taken; afterwards
    both are free again."""
    seen: dict[str, Any] = {}

    def inspect() -> str:
        state = FunctionState.objects.get(name="inspect")
        seen.update(
            status=state.status,
            token=state.lease_token,
            claimed_by=state.claimed_by,
            lock_free=FunctionLock("inspect", str(tmp_path)).acquire(),
        )
        return "looked"

    _, err, code = run_command(
        "dumbwaiter_run",
        "inspect",
        functions=[{"function": inspect, "name": "inspect"}],
        lock_dir=tmp_path,
    )

    assert code == 0, err
    assert seen["status"] == Status.RUNNING
    assert seen["token"]
    assert seen["claimed_by"].endswith(f":{os.getpid()}")
    assert seen["lock_free"] is False
    state = FunctionState.objects.get(name="inspect")
    assert state.lease_token is None
    lock = FunctionLock("inspect", str(tmp_path))
    assert lock.acquire()
    lock.release()


def test_an_unknown_name_exits_2_listing_the_known_ones(tmp_path, marker) -> None:
    """Nothing runs, not even the known names given alongside."""
    runs = marker()
    functions = [marked("alpha", runs), marked("beta", runs)]

    out, err, code = run_command(
        "dumbwaiter_run", "alpha", "nope", functions=functions, lock_dir=tmp_path
    )

    assert code == 2
    assert "nope" in err
    assert "Known: alpha, beta" in err
    assert out == ""
    assert runs_in(runs) == 0
    assert not FunctionState.objects.exists()


def test_a_failure_exits_1_and_the_other_names_still_run(tmp_path, marker) -> None:
    """The failure is recorded with its traceback; the good one is stored."""
    runs = marker()
    functions = [
        marked("fine", runs),
        {"function": "tests.functions.fail", "name": "broken", "args": ["nope"]},
    ]

    out, err, code = run_command(
        "dumbwaiter_run", "broken", "fine", functions=functions, lock_dir=tmp_path
    )

    assert code == 1
    assert "1 function(s) failed: broken" in err
    assert out == "fine: ok\n"
    assert runs_in(runs) == 1
    broken = FunctionState.objects.get(name="broken")
    assert broken.status == Status.FAILED
    assert broken.error_class == "ValueError"
    assert broken.error_message == "nope"
    assert "Traceback" in broken.error_traceback
    assert broken.lease_token is None
    assert FunctionState.objects.get(name="fine").status == Status.SUCCEEDED


def test_a_function_whose_file_lock_is_held_is_skipped(tmp_path, marker) -> None:
    """Another holder of the file lock: a message, no run, no claim, exit 0;
    the functions not locked still run."""
    busy, free = marker("busy"), marker("free")
    store("busy", "old", at=clock.now() - timedelta(seconds=30))
    before = FunctionState.objects.get(name="busy")
    functions = [marked("busy", busy), marked("free", free)]
    holder = FunctionLock("busy", str(tmp_path))
    assert holder.acquire()
    try:
        out, err, code = run_command(
            "dumbwaiter_run", "busy", "free", functions=functions, lock_dir=tmp_path
        )
    finally:
        holder.release()

    assert code == 0, err
    assert "busy: skipped, another tick is running it" in out.splitlines()
    assert "free: ok" in out.splitlines()
    assert runs_in(busy) == 0
    assert runs_in(free) == 1
    after = FunctionState.objects.get(name="busy")
    assert (after.version, after.status, after.lease_token) == (
        before.version,
        Status.SUCCEEDED,
        None,
    )


def test_a_function_claimed_on_another_host_is_skipped(tmp_path, marker) -> None:
    """A live lease held elsewhere: the claim is respected, nothing runs."""
    runs = marker()
    now = clock.now()
    store(
        "remote",
        "old",
        at=now - timedelta(seconds=30),
        status=Status.RUNNING,
        lease_token="f" * 32,
        lease_expires=now + timedelta(seconds=60),
        claimed_by="elsewhere:1",
        claimed_by_lock_scope="another-host",
    )

    out, err, code = run_command(
        "dumbwaiter_run",
        "remote",
        functions=[marked("remote", runs)],
        lock_dir=tmp_path,
    )

    assert code == 0, err
    assert out == "remote: skipped, another tick is running it\n"
    assert runs_in(runs) == 0
    assert FunctionState.objects.get(name="remote").lease_token == "f" * 32


@pytest.mark.subprocess
def test_skips_a_function_a_running_tick_holds(
    children: Children, marker, tmp_path
) -> None:
    """The real dumbwaiter_tick is computing it in another process:
    dumbwaiter_run says so and does not start a second run."""
    runs, release = marker(), tmp_path / "release"
    functions = [
        {
            "function": "tests.functions.span",
            "name": "slow",
            "kwargs": {"marker": str(runs), "release": str(release)},
        }
    ]
    tick = children.start(functions, "--once")
    wait_until(lambda: runs_in(runs) == 1)

    out, err, code = run_command(
        "dumbwaiter_run", "slow", functions=functions, lock_dir=children.lock_dir
    )

    assert code == 0, err
    assert out == "slow: skipped, another tick is running it\n"
    release.touch()
    _, tick_err = tick.communicate(timeout=60)
    assert tick.returncode == 0, tick_err
    assert runs.read_text().split()[::3] == ["start", "end"]
    assert FunctionState.objects.get(name="slow").status == Status.SUCCEEDED


@pytest.mark.subprocess
def test_exit_codes_of_the_real_command(children: Children, marker) -> None:
    """As a shell runs it: 0 when it ran, 1 on a failure, 2 for an unknown
    name (with the known names on stderr)."""
    runs = marker()
    functions = [
        marked("fine", runs),
        {"function": "tests.functions.fail", "name": "broken"},
    ]

    ok = children.run(functions, "fine", command="dumbwaiter_run")
    failed = children.run(functions, "broken", command="dumbwaiter_run")
    unknown = children.run(functions, "missing", command="dumbwaiter_run")

    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "fine: ok\n"
    assert failed.returncode == 1
    assert "1 function(s) failed: broken" in failed.stderr
    assert unknown.returncode == 2
    assert "missing" in unknown.stderr
    assert "Known: broken, fine" in unknown.stderr
    assert runs_in(runs) == 1


# -- dumbwaiter_tick --dry-run ---------------------------------------------------


def dry_run_case(marker) -> tuple[list[dict[str, Any]], dict[str, datetime], Path]:
    """Five functions in every situation the planner knows; returns the
    entries, the moments the output should name, and the shared marker."""
    runs = marker()
    now = clock.now().replace(microsecond=0)
    due_since = now - timedelta(seconds=120)
    later = now + timedelta(hours=2)
    lease_until = now + timedelta(seconds=45)
    store("due", 1, at=now - timedelta(hours=1), next_due=due_since, version=3)
    store("later", 2, at=now - timedelta(seconds=10), next_due=later)
    store(
        "remote",
        3,
        at=now - timedelta(seconds=10),
        status=Status.RUNNING,
        lease_token="r" * 32,
        lease_expires=lease_until,
        claimed_by_lock_scope="another-host",
    )
    store(
        "abandoned",
        4,
        at=now - timedelta(hours=1),
        status=Status.RUNNING,
        lease_token="d" * 32,
        lease_expires=now - timedelta(seconds=5),
        claimed_by_lock_scope="another-host",
    )
    functions = [
        marked(name, runs, frequency=3600)
        for name in ("new", "due", "later", "remote", "abandoned")
    ]
    moments = {"due": due_since, "later": later, "remote": lease_until}
    return functions, moments, runs


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def test_dry_run_says_what_would_run_and_why(tmp_path, marker) -> None:
    """One line per function with its reason: never run, due since when,
    not due until when, running elsewhere, or a lease to take over."""
    functions, moments, _ = dry_run_case(marker)

    out, err, code = run_command(
        "dumbwaiter_tick", "--dry-run", functions=functions, lock_dir=tmp_path
    )

    assert code == 0, err
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert sorted(lines) == ["abandoned", "due", "later", "new", "remote"]
    assert lines["new"].startswith("would run: never run")
    assert lines["due"].startswith(f"would run: due since {stamp(moments['due'])}")
    assert lines["later"].startswith(f"not due until {stamp(moments['later'])}")
    assert lines["remote"].startswith("running on another host")
    assert stamp(moments["remote"]) in lines["remote"]
    assert lines["abandoned"].startswith("would run:")
    assert "take over" in lines["abandoned"]


def test_dry_run_runs_and_changes_nothing(tmp_path, marker) -> None:
    """No function is called, no row is created or updated, no history is
    written, no lock file is made, and only SELECTs reach the database."""
    functions, _, runs = dry_run_case(marker)
    before = snapshot()
    lock_dir = tmp_path / "locks"

    with CaptureQueriesContext(connection) as queries:
        _, err, code = run_command(
            "dumbwaiter_tick", "--dry-run", functions=functions, lock_dir=lock_dir
        )

    assert code == 0, err
    assert runs_in(runs) == 0
    assert snapshot() == before
    assert not FunctionState.objects.filter(name="new").exists()
    assert not lock_dir.exists()
    statements = [q["sql"].lstrip().split()[0].upper() for q in queries]
    assert statements and set(statements) == {"SELECT"}, statements


@pytest.mark.subprocess
def test_dry_run_of_the_real_command(children: Children, marker) -> None:
    """The real command: exit 0, the plan on stdout, nothing run or stored."""
    runs = marker()

    result = children.run([marked("first", runs)], "--dry-run")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("first: would run: never run")
    assert runs_in(runs) == 0
    assert not FunctionState.objects.exists()
    assert not HistoryEntry.objects.exists()
