"""Run every due function once (--once), or keep ticking for a while."""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import Error as DatabaseError

from dumbwaiter.exceptions import ConfigurationError
from dumbwaiter.management.base import (
    EXIT_CONFIGURATION,
    EXIT_FAILED,
    command_logging,
    database_unavailable,
    load_registry,
    stop_on_signals,
)
from dumbwaiter.tick import Loop, Tick, TickReport

# A minutely crontab starts the next invocation 60 s after this one; stopping
# new ticks a few seconds earlier keeps invocations from overlapping.
DEFAULT_FOR = 55.0


def positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of seconds"
        ) from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    if seconds > 86400:
        raise argparse.ArgumentTypeError("must be at most 86400 seconds (a day)")
    return seconds


class Command(BaseCommand):
    help = (
        "Run the dumbwaiter functions that are due and store their values. "
        "Exit codes: 0 ok, 1 a function failed, 2 configuration error, "
        "3 database unavailable."
    )
    # The command validates its own settings and exits 2 on a mistake; the
    # full system-check run would exit 1 instead and slow every tick.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Run one tick and exit (for cron and systemd timers).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print what would run now, and why, without running or changing "
            "anything.",
        )
        parser.add_argument(
            "--for",
            dest="for_seconds",
            type=positive_seconds,
            default=DEFAULT_FOR,
            metavar="SECONDS",
            help=(
                "Without --once: keep ticking, sleeping until the next function "
                f"is due, and start no new tick after SECONDS "
                f"(default {DEFAULT_FOR:g}, fitting a minutely crontab)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with command_logging(options["verbosity"], self.stderr):
            registry = load_registry()
            reports: list[TickReport]
            try:
                if options["dry_run"]:
                    self.dry_run(Tick(registry))
                    return
                if options["once"]:
                    reports = [Tick(registry).run()]
                else:
                    stop = threading.Event()
                    with stop_on_signals(stop):
                        reports = Loop(
                            lambda: Tick(registry),
                            stop=stop,
                            deadline=time.monotonic() + options["for_seconds"],
                        ).run()
            except DatabaseError as exc:
                raise database_unavailable(exc) from exc
            except ConfigurationError as exc:
                raise CommandError(
                    f"dumbwaiter is misconfigured: {exc}",
                    returncode=EXIT_CONFIGURATION,
                ) from exc
        failed = sorted({name for report in reports for name in report.failed})
        # A timed-out function's thread may still run; this process exits
        # now, and the thread with it (workers are daemon threads).
        if failed:
            raise CommandError(
                f"{len(failed)} function(s) failed: {', '.join(failed)}",
                returncode=EXIT_FAILED,
            )

    def dry_run(self, tick: Tick) -> None:
        now = tick.now()
        plan = tick.plan(now, write=False)
        lines = []
        for run in plan.due:
            if run.needs_free_lock:
                why = "only if its claimant on this host is dead (free lock)"
            elif run.abandoned_by:
                why = "its previous run's lease expired; would take over"
            elif run.version == 0:
                why = "never run"
            else:
                why = f"due since {run.slot:%Y-%m-%d %H:%M:%S}"
            lines.append((run.spec.name, f"would run: {why}"))
        for name, until in plan.running_elsewhere.items():
            when = f"{until:%Y-%m-%d %H:%M:%S}" if until else "?"
            lines.append((name, f"running on another host (lease until {when})"))
        for name, due in plan.not_due.items():
            when = f"{due:%Y-%m-%d %H:%M:%S}" if due else "?"
            lines.append((name, f"not due until {when}"))
        for name, text in sorted(lines):
            self.stdout.write(f"{name}: {text} (UTC)")
