"""Where every function stands, for operators: the status command and admin.

One query reads every state row (without the values); freshness is judged
against each function's own schedule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from dumbwaiter import clock, conf
from dumbwaiter.models import FunctionState, Status
from dumbwaiter.schedules import Schedule
from dumbwaiter.specs import Registry


def stale_at(schedule: Schedule, computed_at: datetime) -> datetime:
    """When a value computed at ``computed_at`` counts as stale.

    That is after the slot following it plus ``DUMBWAITER_STALE_AFTER - 1``
    further periods: with the default of 2, once one whole scheduled run has
    been missed. Measuring from the next slot keeps irregular cron schedules
    (weekdays only, say) from looking stale over a weekend.
    """
    first = schedule.next_due(computed_at, computed_at)
    second = schedule.next_due(first, first)
    extra = float(conf.stale_after()) - 1
    return first + (second - first) * extra


@dataclass(frozen=True)
class FunctionStatus:
    name: str
    schedule: str
    status: str
    last_started: datetime | None
    last_finished: datetime | None
    next_due: datetime | None
    duration: float | None
    computed_at: datetime | None
    age: float | None
    stale: bool
    error: str
    error_at: datetime | None
    running_on: str

    @property
    def healthy(self) -> bool:
        return not self.stale and self.status not in (Status.FAILED, Status.TIMED_OUT)

    @property
    def problem(self) -> str:
        """Why ``healthy`` is False, in a few words."""
        reasons = []
        if self.status in (Status.FAILED, Status.TIMED_OUT):
            reasons.append(f"last run {Status(self.status).label}")
        if self.computed_at is None:
            reasons.append("never computed")
        elif self.stale:
            reasons.append("stale")
        return ", ".join(reasons)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        data["healthy"] = self.healthy
        return data


_FIELDS = (
    "name",
    "status",
    "last_started",
    "last_finished",
    "next_due",
    "duration",
    "value_computed_at",
    "error_class",
    "error_message",
    "error_at",
    "claimed_by",
    "lease_token",
)


def collect(registry: Registry, now: datetime | None = None) -> list[FunctionStatus]:
    """One status per configured function, in settings order, from one query."""
    now = now or clock.now()
    rows = {row["name"]: row for row in FunctionState.objects.values(*_FIELDS)}
    statuses = []
    for name, spec in registry.specs.items():
        row = rows.get(name, {})
        computed_at = clock.from_db(row.get("value_computed_at"))
        stale = computed_at is None or now >= stale_at(spec.schedule, computed_at)
        error = ""
        if row.get("error_class"):
            first_line = (row.get("error_message") or "").strip().splitlines()
            error = row["error_class"] + (f": {first_line[0]}" if first_line else "")
        statuses.append(
            FunctionStatus(
                name=name,
                schedule=spec.schedule.describe(),
                status=row.get("status", Status.NEVER_RUN),
                last_started=clock.from_db(row.get("last_started")),
                last_finished=clock.from_db(row.get("last_finished")),
                next_due=clock.from_db(row.get("next_due")),
                duration=row.get("duration"),
                computed_at=computed_at,
                # Clamped: another host's clock may run a little ahead.
                age=max(0.0, (now - computed_at).total_seconds())
                if computed_at
                else None,
                stale=stale,
                error=error,
                error_at=clock.from_db(row.get("error_at")),
                running_on=row.get("claimed_by", "") if row.get("lease_token") else "",
            )
        )
    return statuses


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=round(seconds)))
