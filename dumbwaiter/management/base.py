"""What the dumbwaiter commands share: exit codes, logging, signal handling."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from django.core.management.base import CommandError
from django.db import Error as DatabaseError

from dumbwaiter import specs
from dumbwaiter.specs import Registry

# Exit codes, as documented in the README.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIGURATION = 2
EXIT_DATABASE = 3

_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}


@contextmanager
def command_logging(verbosity: int, stream: TextIO) -> Iterator[None]:
    """Show ``dumbwaiter.*`` records on stderr at the level -v asks for.

    At the default verbosity a project that configured its own handlers for
    these loggers is left alone; -v 0, 2 and 3 always apply, since the
    operator asked for them on the command line.
    """
    logger = logging.getLogger("dumbwaiter")
    if verbosity == 1 and logger.hasHandlers():
        yield
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    level = _LEVELS.get(verbosity, logging.DEBUG)
    handler.setLevel(level)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def load_registry() -> Registry:
    """The validated settings, or exit 2 with every problem listed."""
    registry = specs.validate()
    if registry.problems:
        lines = "\n".join(f"  {p}" for p in registry.problems)
        raise CommandError(
            f"dumbwaiter is misconfigured; nothing was run:\n{lines}",
            returncode=EXIT_CONFIGURATION,
        )
    return registry


def database_unavailable(exc: DatabaseError) -> CommandError:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return CommandError(
        f"dumbwaiter stopped: it cannot use the database ({type(exc).__name__}: "
        f"{first_line}). Check that it is reachable and that 'manage.py migrate' "
        "has run.",
        returncode=EXIT_DATABASE,
    )


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` so a loop ends after the current tick."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    previous = {
        sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
