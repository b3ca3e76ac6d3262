"""Ticks on several hosts racing for one function, with real processes.

Each child gets its own lock directory, which is what a separate host looks
like to dumbwaiter: the file locks never meet, so only the database claim
keeps runs apart. Runs are counted in marker files, never in the database.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dumbwaiter import clock
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from tests.conftest import REPO, Children, child_env, runs_in
from tests.gate import Gate

pytestmark = pytest.mark.subprocess

HOSTS = 20
ROUNDS = 5


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_gated(
    children: Children,
    gate: Gate,
    functions: list[dict[str, Any]],
    *args: str,
    lock_dir: Path,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start a tick that sets Django up, then waits for ``gate`` to open."""
    process = subprocess.Popen(
        gate.argv("dumbwaiter_tick", *args),
        cwd=REPO,
        env=child_env(functions, lock_dir=lock_dir, extra=extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children.started.append(process)  # killed by the fixture if still running
    return process


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    return process.communicate(timeout=timeout)


def spans(path: Path) -> list[tuple[float, float | None]]:
    """(start, end) of every run that ``tests.functions.span`` recorded."""
    open_runs: dict[str, float] = {}
    result: list[tuple[float, float | None]] = []
    for line in path.read_text().splitlines() if path.exists() else []:
        what, pid, moment = line.split()
        if what == "start":
            open_runs[pid] = float(moment)
        else:
            result.append((open_runs.pop(pid), float(moment)))
    result.extend((start, None) for start in open_runs.values())
    return sorted(result, key=lambda run: run[0])


def test_simultaneous_ticks_on_many_hosts_run_a_due_function_once(
    children: Children, marker, tmp_path: Path
) -> None:
    """20 ticks released at the same moment on 20 hosts: one run, one history row.

    Repeated over several rounds, making the function due again in between;
    every tick exits 0 and prints nothing.
    """
    runs = marker()
    functions = [
        {
            "function": "tests.functions.mark",
            "name": "contested",
            "frequency": 3600,
            "kwargs": {"marker": str(runs)},
        }
    ]
    hosts = [tmp_path / f"host-{index}" for index in range(HOSTS)]

    for round_number in range(1, ROUNDS + 1):
        if round_number > 1:
            FunctionState.objects.filter(name="contested").update(
                next_due=clock.to_db(clock.now() - timedelta(hours=1))
            )
        with Gate(tmp_path / f"gate-{round_number}") as gate:
            ticks = [
                start_gated(children, gate, functions, "--once", lock_dir=host)
                for host in hosts
            ]
            gate.wait_ready(ticks)
        outputs = [finish(tick) for tick in ticks]

        for tick, (out, err) in zip(ticks, outputs, strict=True):
            assert tick.returncode == 0, err
            assert (out, err) == ("", "")
        assert runs_in(runs) == round_number, f"round {round_number}"
        assert HistoryEntry.objects.filter(name="contested").count() == round_number
        state = FunctionState.objects.get(name="contested")
        assert state.status == Status.SUCCEEDED
        assert state.lease_token is None


@pytest.mark.parametrize("shared_lock_dir", [False, True], ids=["hosts", "one-host"])
def test_function_slower_than_its_frequency_never_overlaps_itself(
    children: Children, marker, tmp_path: Path, shared_lock_dir: bool
) -> None:
    """Ticks every second for a 3 s function due every second: runs never overlap.

    Each period that came due while a run was in progress is skipped, not
    queued: once the ticks stop, at most one run per 3 s has happened.
    """
    runs = marker()
    functions = [
        {
            "function": "tests.functions.span",
            "name": "slowpoke",
            "frequency": 1,
            "kwargs": {"marker": str(runs), "sleep": 3},
        }
    ]
    ticks = []
    began = time.monotonic()
    for index in range(8):
        lock_dir = tmp_path / ("host" if shared_lock_dir else f"host-{index}")
        ticks.append(children.start(functions, "--once", lock_dir=lock_dir))
        time.sleep(max(0.0, began + index + 1 - time.monotonic()))
    outputs = [finish(tick) for tick in ticks]
    total = time.monotonic() - began

    for tick, (out, err) in zip(ticks, outputs, strict=True):
        assert tick.returncode == 0, err
        assert (out, err) == ("", "")
    recorded = spans(runs)
    assert all(end is not None for _, end in recorded), recorded
    for (_, end), (next_start, _) in itertools.pairwise(recorded):
        assert end is not None and next_start >= end, f"overlap in {recorded}"
    # A period that comes due while ticks keep arriving is run.
    assert len(recorded) >= 2, recorded
    assert len(recorded) <= math.ceil(total / 3) + 1, (total, recorded)
    assert HistoryEntry.objects.filter(name="slowpoke").count() == len(recorded)


def test_killed_tick_blocks_other_hosts_until_its_lease_expires(
    children: Children, marker, tmp_path: Path
) -> None:
    """After SIGKILL, another host leaves the function alone while the lease
    holds, then takes it over: the lost run is recorded as abandoned and the
    takeover warns at the default verbosity.
    """
    runs = marker()
    lease = {"DUMBWAITER_TEST_LEASE": "2"}
    functions = [
        {
            "function": "tests.functions.mark",
            "name": "victim",
            "kwargs": {"marker": str(runs), "sleep": 60},
        }
    ]
    quick = [dict(functions[0], kwargs={"marker": str(runs)})]
    first = children.start(
        functions, "--once", lock_dir=tmp_path / "host-a", extra_env=lease
    )
    wait_until(lambda: runs_in(runs) == 1, "the first run to start")

    # The second host is started before the kill and waits at the gate, so it
    # plans well inside the lease (at least two thirds of it remain).
    with Gate(tmp_path / "gate") as gate:
        early = start_gated(
            children,
            gate,
            quick,
            "--once",
            lock_dir=tmp_path / "host-b",
            extra_env=lease,
        )
        gate.wait_ready([early])
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        held = FunctionState.objects.get(name="victim")
    out, err = finish(early)

    assert early.returncode == 0, err
    assert (out, err) == ("", "")
    assert runs_in(runs) == 1
    state = FunctionState.objects.get(name="victim")
    assert state.status == Status.RUNNING
    assert state.lease_token == held.lease_token
    assert state.error_class == ""

    expires = clock.from_db(state.lease_expires)
    assert expires is not None
    wait_until(lambda: clock.now() > expires, "the lease to expire")
    late = children.run(quick, "--once", lock_dir=tmp_path / "host-b", extra_env=lease)

    assert late.returncode == 0, late.stderr
    assert "taking over" in late.stderr
    assert runs_in(runs) == 2
    state = FunctionState.objects.get(name="victim")
    assert state.status == Status.SUCCEEDED
    assert state.lease_token is None
    assert state.error_class == "dumbwaiter.exceptions.RunAbandoned"
    error_at = clock.from_db(state.error_at)
    assert error_at is not None and error_at >= expires
    assert HistoryEntry.objects.filter(name="victim").count() == 1


def test_timed_out_run_still_going_is_not_started_again_elsewhere(
    children: Children, marker, tmp_path: Path
) -> None:
    """A run given up on after its ``timeout`` can still be executing in its
    tick's process (a thread cannot be stopped); no other tick may start a
    second copy of the function while it does."""
    runs = marker("hung")
    functions = [
        {
            "function": "tests.functions.span",
            "name": "hung",
            "frequency": 1,
            "timeout": 1,
            "kwargs": {"marker": str(runs), "sleep": 5},
        },
        {
            # Keeps the first tick's process, and so the hung thread, alive.
            "function": "tests.functions.span",
            "name": "anchor",
            "frequency": 3600,
            "kwargs": {"marker": str(marker("anchor")), "sleep": 7},
        },
    ]
    quick = [dict(functions[0], kwargs={"marker": str(runs)}), functions[1]]
    first = children.start(functions, "--once", lock_dir=tmp_path / "host-a")

    wait_until(lambda: spans(runs), "the first run to start")
    # By now the first tick has given up on the run (after 1 s), and its
    # period has come round again (frequency 1 s), but the run goes on.
    began = spans(runs)[0][0]
    wait_until(lambda: time.time() > began + 3, "the timeout to pass")
    second = children.run(quick, "--once", lock_dir=tmp_path / "host-b")
    finish(first)

    assert second.returncode == 0, second.stderr
    recorded = spans(runs)
    assert recorded[0][1] is not None and recorded[0][1] - recorded[0][0] >= 5
    for (_, end), (next_start, _) in itertools.pairwise(recorded):
        assert end is not None and next_start >= end, f"overlap in {recorded}"
