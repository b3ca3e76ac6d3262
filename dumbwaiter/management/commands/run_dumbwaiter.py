"""Tick in the foreground until stopped: for development and containers."""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import Error as DatabaseError

from dumbwaiter.management.base import (
    EXIT_FAILED,
    command_logging,
    load_registry,
    stop_on_signals,
)
from dumbwaiter.management.commands.dumbwaiter_tick import positive_seconds
from dumbwaiter.tick import Loop, Tick

logger = logging.getLogger("dumbwaiter.command")

# After a database error the loop waits this long before trying again, so an
# outage costs one log line a period, not a busy loop.
RETRY_AFTER = 10.0


class Command(BaseCommand):
    help = (
        "Run dumbwaiter ticks in a loop until Ctrl-C or SIGTERM; the functions "
        "in progress finish first."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--max-sleep",
            type=positive_seconds,
            default=60.0,
            help="Longest pause between ticks in seconds (default 60).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with command_logging(options["verbosity"], self.stderr):
            registry = load_registry()
            stop = threading.Event()
            with stop_on_signals(stop):
                while not stop.is_set():
                    loop = Loop(
                        lambda: Tick(registry),
                        stop=stop,
                        max_sleep=options["max_sleep"],
                    )
                    try:
                        loop.run()
                    except DatabaseError:
                        logger.exception(
                            "tick failed on a database error; retrying in %ss",
                            RETRY_AFTER,
                        )
                        stop.wait(RETRY_AFTER)
                    if loop.stopped_for_hung_thread:
                        raise CommandError(
                            "a function timed out and may still be running; "
                            "exiting so that it stops (restart the command)",
                            returncode=EXIT_FAILED,
                        )
            logger.info("stopped")
