"""When a function is next due, in UTC.

A schedule answers two questions for the tick: is a stored ``next_due`` due
at this moment, and which slot follows a run. Both work on aware UTC
datetimes; the models store exactly what these return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# A tick started by cron or a timer may arrive a little before the slot it is
# meant for (start-up jitter, a timer anchored to boot rather than to the
# clock). Runs are allowed this much early, as a share of the period, capped
# so that long periods do not run minutes ahead.
EARLY_SHARE = 0.1
EARLY_CAP = timedelta(seconds=5)


@dataclass(frozen=True)
class Frequency:
    """Every ``seconds`` seconds, on a grid anchored at the Unix epoch.

    Anchoring on the epoch, not on the first run, keeps runs on round times
    (a 60 s function runs at :00 of every minute) so cron-started ticks,
    which start just after the minute, always find it due.
    """

    seconds: float

    @property
    def period(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @property
    def tolerance(self) -> timedelta:
        return min(self.period * EARLY_SHARE, EARLY_CAP)

    def is_due(self, next_due: datetime | None, now: datetime) -> bool:
        return next_due is None or next_due <= now + self.tolerance

    def next_due(self, slot: datetime, finished: datetime) -> datetime:
        """The first grid point after both the slot that ran and its end.

        Counting from the end means a run that overran its period, or a tick
        that came after downtime, is followed by one run at the next slot,
        never by a burst of catch-up runs.
        """
        after = max(slot, finished).timestamp()
        point = (math.floor(after / self.seconds) + 1) * self.seconds
        if point <= after:  # float division landed just below a grid point
            point += self.seconds
        return datetime.fromtimestamp(point, tz=UTC)

    def describe(self) -> str:
        seconds = self.seconds
        if seconds == int(seconds):
            return f"every {int(seconds)}s"
        return f"every {seconds:g}s"
