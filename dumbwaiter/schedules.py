"""When a function is next due, in UTC.

A schedule answers two questions for the tick: is a stored ``next_due`` due
at this moment, and which slot follows a run. Both work on aware UTC
datetimes; the models store exactly what these return.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

# A tick started by cron or a timer may arrive a little before the slot it is
# meant for (start-up jitter, a timer anchored to boot rather than to the
# clock). Runs are allowed this much early, as a share of the period, capped
# so that long periods do not run minutes ahead.
EARLY_SHARE = 0.1
EARLY_CAP = timedelta(seconds=5)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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
        # Whole microseconds, the resolution datetimes and databases keep:
        # float seconds would round some grid points back onto the slot.
        after = (max(slot, finished) - _EPOCH) // _MICROSECOND
        period = max(1, round(self.seconds * 1_000_000))
        point = (after // period + 1) * period
        return _EPOCH + point * _MICROSECOND

    def slot_for(self, now: datetime) -> datetime:
        return _slot_for(self, now)

    def describe(self) -> str:
        seconds = self.seconds
        if seconds == int(seconds):
            return f"every {int(seconds)}s"
        return f"every {seconds:g}s"


@dataclass(frozen=True)
class Cron:
    """A cron expression evaluated on the wall clock of ``timezone``.

    Five fields, or six with seconds written last (croniter's order):
    ``* * * * * */5`` is every five seconds.

    Daylight saving time follows what cron daemons do. A wall time that the
    clock skips (02:30 on a spring-forward night) runs once, at the same
    offset after the jump. A wall time that happens twice (02:30 on a
    fall-back night) runs once, the first time, unless the hour field is
    ``*``: then the expression means "every hour" and the repeated hour runs
    again, so hourly work happens once per real hour.
    """

    expression: str
    timezone: str

    @property
    def _tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def has_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    @property
    def _repeats_in_fold(self) -> bool:
        from croniter import croniter

        return croniter(self.expression).expanded[1] == ["*"]

    @property
    def tolerance(self) -> timedelta:
        return timedelta(seconds=0.5) if self.has_seconds else EARLY_CAP

    def is_due(self, next_due: datetime | None, now: datetime) -> bool:
        return next_due is None or next_due <= now + self.tolerance

    def next_due(self, slot: datetime, finished: datetime) -> datetime:
        return self.next_after(max(slot, finished))

    def slot_for(self, now: datetime) -> datetime:
        return _slot_for(self, now)

    def next_after(self, after: datetime) -> datetime:
        """The first moment strictly after ``after`` that the expression names."""
        tz = self._tz
        folds = (0, 1) if self._repeats_in_fold else (0,)
        # Walk naive wall times from a little before ``after``: a repeated
        # hour's second pass lies up to a few hours of wall time back.
        from croniter import croniter  # only projects with cron entries pay for it

        wall = after.astimezone(tz).replace(tzinfo=None) - _WALL_LOOKBACK
        times = croniter(self.expression, wall)
        best: datetime | None = None
        while True:
            candidate_wall = times.get_next(datetime)
            first = candidate_wall.replace(tzinfo=tz, fold=0)
            for fold in folds:
                local = candidate_wall.replace(tzinfo=tz, fold=fold)
                if fold == 1 and local.utcoffset() == first.utcoffset():
                    continue  # not an ambiguous wall time: no second pass
                moment = local.astimezone(UTC)
                if moment > after and (best is None or moment < best):
                    best = moment
            # Once wall time is past the best hit by more than any DST shift,
            # nothing later can come earlier in real time.
            if best is not None and first.astimezone(UTC) > best + _WALL_LOOKBACK:
                return best

    def describe(self) -> str:
        return f"cron {self.expression!r} ({self.timezone})"


def _slot_for(schedule: Frequency | Cron, now: datetime) -> datetime:
    """The slot a run starting at ``now`` without a slot of its own counts for.

    A first run, a forced run or a takeover that starts in the early window
    of the next slot counts as that slot's run; otherwise it stands alone.
    Without this a first run one second before the minute would be followed
    by a second run one second later.
    """
    upcoming = schedule.next_due(now, now)
    return upcoming if upcoming - now <= schedule.tolerance else now


# Longer than any daylight-saving shift in use (Lord Howe's is 30 minutes,
# the usual one hour; a few historical ones were two).
_WALL_LOOKBACK = timedelta(hours=3)

Schedule = Frequency | Cron
