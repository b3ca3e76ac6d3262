"""Sends dumbwaiter's models to one of two databases (bench/growth.py).

Switching ``ACTIVE`` between ticks lets one process alternate a tick on the
small database with a tick on the big one.
"""

from __future__ import annotations

from typing import Any

ACTIVE = "small"


class Switch:
    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return ACTIVE if model._meta.app_label == "dumbwaiter" else None

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        return ACTIVE if model._meta.app_label == "dumbwaiter" else None
