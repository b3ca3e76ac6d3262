"""Shared fixtures: running the real command in child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import override_settings

REPO = Path(__file__).resolve().parent.parent


def child_env(
    functions: list[dict[str, Any]],
    *,
    lock_dir: str | os.PathLike[str] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a child process that shares this test's database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DUMBWAITER_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        DUMBWAITER_TEST_FUNCTIONS=json.dumps(functions),
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    if lock_dir is not None:
        env["DUMBWAITER_TEST_LOCK_DIR"] = str(lock_dir)
    env.update(extra or {})
    return env


def command_argv(command: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "django", command, *args]


class Children:
    """Starts child processes and makes sure none outlives the test."""

    def __init__(self, lock_dir: Path) -> None:
        self.lock_dir = lock_dir
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self,
        functions: list[dict[str, Any]],
        *args: str,
        command: str = "dumbwaiter_tick",
        lock_dir: str | os.PathLike[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            command_argv(command, *args),
            cwd=REPO,
            env=child_env(
                functions, lock_dir=lock_dir or self.lock_dir, extra=extra_env
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process

    def run(
        self,
        functions: list[dict[str, Any]],
        *args: str,
        timeout: float = 120,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        process = self.start(functions, *args, **kwargs)
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def cleanup(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.fixture
def children(tmp_path: Path, transactional_db: None) -> Iterator[Children]:
    """Runs the real management command against this test's database."""
    helper = Children(tmp_path / "locks")
    yield helper
    helper.cleanup()


@pytest.fixture
def marker(tmp_path: Path) -> Callable[[str], Path]:
    """Paths of files that functions append a line to on every run."""

    def make(name: str = "marker") -> Path:
        return tmp_path / f"{name}.runs"

    return make


def runs_in(path: Path) -> int:
    """How many runs a marker file recorded."""
    return len(path.read_text().splitlines()) if path.exists() else 0


LOCMEM = "django.core.cache.backends.locmem.LocMemCache"


@pytest.fixture(params=["database", "cache"])
def storage(request: pytest.FixtureRequest) -> Iterator[str]:
    """Database storage, then a LocMemCache of this test's own."""
    if request.param == "database":
        with override_settings(DUMBWAITER_STORAGE="database"):
            yield "database"
        return
    cache = {"BACKEND": LOCMEM, "LOCATION": f"dumbwaiter-{uuid.uuid4().hex}"}
    with override_settings(
        CACHES={"default": {"BACKEND": LOCMEM}, "values": cache},
        DUMBWAITER_STORAGE="cache:values",
    ):
        try:
            yield "cache"
        finally:
            caches["values"].clear()
