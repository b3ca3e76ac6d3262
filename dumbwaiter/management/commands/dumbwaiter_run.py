"""Run named functions now, whatever their schedule."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import Error as DatabaseError

from dumbwaiter.management.base import (
    EXIT_CONFIGURATION,
    EXIT_FAILED,
    command_logging,
    database_unavailable,
    load_registry,
)
from dumbwaiter.tick import Tick


class Command(BaseCommand):
    help = (
        "Run the named dumbwaiter functions now, whatever their schedule, under "
        "the same locks and claims as a tick, and store their values."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("names", nargs="+", metavar="NAME")

    def handle(self, *args: Any, **options: Any) -> None:
        with command_logging(options["verbosity"], self.stderr):
            registry = load_registry()
            names = list(dict.fromkeys(options["names"]))
            unknown = [name for name in names if name not in registry.specs]
            if unknown:
                known = ", ".join(sorted(registry.specs)) or "none"
                raise CommandError(
                    f"unknown function(s): {', '.join(unknown)}. Known: {known}",
                    returncode=EXIT_CONFIGURATION,
                )
            tick = Tick(registry, only=names, force=True)
            try:
                report = tick.run()
            except DatabaseError as exc:
                raise database_unavailable(exc) from exc
        if options["verbosity"] >= 1:
            # Sorted: threads finish in any order.
            for name in sorted(report.succeeded):
                self.stdout.write(f"{name}: ok")
            busy = report.locked + report.lost_claim + report.running_elsewhere
            for name in sorted(busy):
                self.stdout.write(f"{name}: skipped, another tick is running it")
        if report.failed:
            raise CommandError(
                f"{len(report.failed)} function(s) failed: {', '.join(report.failed)}",
                returncode=EXIT_FAILED,
            )
