"""Show every function's state; --check makes it a health check."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import Error as DatabaseError

from dumbwaiter.management.base import (
    EXIT_FAILED,
    database_unavailable,
    load_registry,
)
from dumbwaiter.status import FunctionStatus, collect, format_age

COLUMNS = (
    "name",
    "schedule",
    "last run",
    "next due",
    "took",
    "status",
    "age",
    "error",
)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _row(status: FunctionStatus) -> list[str]:
    took = f"{status.duration:.3f}s" if status.duration is not None else "-"
    label = status.status
    if status.running_on:
        label = f"{label} on {status.running_on}"
    age = format_age(status.age)
    if status.stale and status.computed_at is not None:
        age += " (stale)"
    return [
        status.name,
        status.schedule,
        _when(status.last_started),
        _when(status.next_due),
        took,
        label,
        age,
        status.error if status.status in ("failed", "timeout") else "",
    ]


class Command(BaseCommand):
    help = (
        "List every dumbwaiter function with its schedule, last run, next run, "
        "status and the age of its value (times in UTC). With --check, list only "
        "stale or failing functions and exit 1 if there are any."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="Print JSON instead of a table."
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help=(
                "Health check: print only functions whose value is stale or never "
                "computed, or whose last run failed; exit 1 if there are any."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        registry = load_registry()
        try:
            statuses = collect(registry)
        except DatabaseError as exc:
            raise database_unavailable(exc) from exc
        shown = [s for s in statuses if not s.healthy] if options["check"] else statuses
        if options["json"]:
            self.stdout.write(json.dumps([s.as_json() for s in shown], indent=2))
        elif shown:
            self.write_table([_row(s) for s in shown])
        if options["check"] and shown:
            problems = "; ".join(f"{s.name}: {s.problem}" for s in shown)
            raise CommandError(
                f"{len(shown)} function(s) unhealthy: {problems}",
                returncode=EXIT_FAILED,
            )

    def write_table(self, rows: list[list[str]]) -> None:
        widths = [
            max(len(row[i]) for row in [list(COLUMNS), *rows])
            for i in range(len(COLUMNS))
        ]
        for row in [list(COLUMNS), *rows]:
            cells = zip(row, widths, strict=True)
            line = "  ".join(cell.ljust(width) for cell, width in cells)
            self.stdout.write(line.rstrip())
