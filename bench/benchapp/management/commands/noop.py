"""A command that does nothing: the start-up cost every command pays."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Do nothing (the benchmarks' baseline for a command's start-up)."
    # Like dumbwaiter_tick, skip the system checks: the baseline is start-up.
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        return None
