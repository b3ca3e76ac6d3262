"""Start many management commands at the same moment, for the multi-host tests.

A child runs ``python -m tests.gate GATE COMMAND [ARGS...]``: it pays for
Django's start-up first, then reports ready and blocks on a shared lock of the
GATE file, which the test holds exclusively. When the test lets go, every
waiting child runs ``manage.py COMMAND ARGS`` at once, exactly as
``python -m django`` would (same output, same exit codes).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

READY_SUFFIX = ".ready"


class Gate:
    """The test's side: hold the gate shut, count ready children, open it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ready_dir = path.with_name(path.name + READY_SUFFIX)
        self._handle: Any = None

    def __enter__(self) -> Gate:
        self.ready_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.ready_dir.iterdir():
            stale.unlink()
        self._handle = open(self.path, "a")
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.open()

    def argv(self, command: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "tests.gate", str(self.path), command, *args]

    def wait_ready(
        self, processes: list[subprocess.Popen[str]], timeout: float = 120
    ) -> None:
        """Block until every process waits at the gate (or one has exited)."""
        deadline = time.monotonic() + timeout
        while len(list(self.ready_dir.iterdir())) < len(processes):
            dead = [p for p in processes if p.poll() is not None]
            if dead:
                raise AssertionError(
                    f"a gated child exited early: {dead[0].communicate()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError("gated children never became ready")
            time.sleep(0.02)

    def open(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def main(argv: list[str]) -> None:
    gate, command, *args = argv
    import django

    django.setup()
    # Import what the command needs before waiting, so that the gate only
    # leaves the tick itself to race.
    from django.core.management import execute_from_command_line
    from django.db import connection

    import dumbwaiter.management.commands.dumbwaiter_tick
    import dumbwaiter.tick  # noqa: F401

    connection.ops  # noqa: B018 - loads the database driver, does not connect

    with open(gate) as handle:
        ready = Path(gate + READY_SUFFIX) / str(os.getpid())
        ready.touch()
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
    execute_from_command_line(["python -m django", command, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
