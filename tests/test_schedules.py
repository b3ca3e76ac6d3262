"""The frequency schedule: when a function is due, and which slot comes next.

Pure functions of datetimes, so these tests simulate thousands of ticks
without a database or a clock.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from dumbwaiter.schedules import Frequency

# A whole hour: a grid point of every period that divides 3600 s.
GRID = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def simulate(
    schedule: Frequency,
    ticks: list[datetime],
    *,
    durations: list[float] | None = None,
    next_due: datetime | None = None,
) -> tuple[list[datetime], datetime | None]:
    """Run the due rule the way the tick applies it; return run times and state.

    A due function runs for the slot stored in ``next_due`` (or at once when
    it never ran) and the next slot is computed from that slot and the end of
    the run.
    """
    runs: list[datetime] = []
    for index, now in enumerate(ticks):
        if schedule.is_due(next_due, now):
            runs.append(now)
            took = durations[index] if durations else 0.2
            next_due = schedule.next_due(next_due or now, now + seconds(took))
    return runs, next_due


def on_grid(moment: datetime, schedule: Frequency) -> bool:
    """Whether ``moment`` is a grid point, to the microsecond datetimes keep."""
    ratio = moment.timestamp() / schedule.seconds
    return abs(ratio - round(ratio)) * schedule.seconds < 2e-6


@pytest.mark.parametrize(
    ("period", "tolerance"),
    [(1, 0.1), (10, 1), (30, 3), (50, 5), (60, 5), (3600, 5), (86400, 5), (2.5, 0.25)],
)
def test_tolerance_is_a_tenth_of_the_period_capped_at_five_seconds(
    period: float, tolerance: float
) -> None:
    """Runs may start a tenth of a period early, never more than 5 s."""
    assert Frequency(period).tolerance == seconds(tolerance)


def test_a_function_that_never_ran_is_due() -> None:
    """No stored next_due means due at once."""
    assert Frequency(60).is_due(None, GRID)
    assert Frequency(86400).is_due(None, GRID)


def test_due_from_tolerance_before_the_slot_and_any_time_after() -> None:
    """Due from next_due minus the tolerance on; not a microsecond earlier."""
    every_minute = Frequency(60)
    assert every_minute.is_due(GRID, GRID)
    assert every_minute.is_due(GRID, GRID - seconds(5))
    assert not every_minute.is_due(GRID, GRID - seconds(5) - timedelta(microseconds=1))
    assert not every_minute.is_due(GRID, GRID - seconds(30))
    assert every_minute.is_due(GRID, GRID + timedelta(days=3))


@pytest.mark.parametrize(
    ("jitter", "seed"),
    [((-2, 2), 1), ((-2, 2), 2), ((-2, -1), 3), ((1, 2), 4)],
    ids=["either-way", "either-way-2", "early", "late"],
)
def test_ticks_every_minute_with_jitter_run_a_60s_function_every_time(
    jitter: tuple[float, float], seed: int
) -> None:
    """200 ticks a minute apart, each 1-2 s early or late: 200 runs."""
    rng = random.Random(seed)
    ticks = [GRID + seconds(60 * i + rng.uniform(*jitter)) for i in range(200)]
    durations = [rng.uniform(0.0, 1.5) for _ in ticks]

    runs, _ = simulate(Frequency(60), ticks, durations=durations)

    assert runs == ticks


def test_a_function_is_not_run_twice_for_one_slot() -> None:
    """Ticks every second run a 60 s function once a minute, on the minute."""
    ticks = [GRID + seconds(0.3 + s) for s in range(600)]

    runs, _ = simulate(Frequency(60), ticks, durations=[0.1] * len(ticks))

    # The first run is at once; each later run is the first tick inside the
    # 5 s early window of the next minute.
    expected = [ticks[0]] + [GRID + seconds(60 * m - 5 + 0.3) for m in range(1, 11)]
    assert runs == expected


def test_after_downtime_one_run_then_the_next_grid_point() -> None:
    """After 10 missed periods a tick runs once; next_due is the next minute."""
    schedule = Frequency(60)
    came_back = GRID + seconds(600 + 17.25)

    assert schedule.is_due(GRID, came_back)
    next_due = schedule.next_due(GRID, came_back + seconds(0.5))
    assert next_due == GRID + seconds(660)

    # Ticks every 2 s for the next minute: no catch-up burst.
    ticks = [came_back + seconds(2 * i) for i in range(1, 30)]
    runs, after = simulate(schedule, ticks, next_due=next_due)
    assert runs == [t for t in ticks if t >= GRID + seconds(655)][:1]
    assert after == GRID + seconds(720)


def test_a_run_longer_than_the_period_is_followed_by_one_run_not_a_burst() -> None:
    """A 150 s run of a 60 s function: the next run is at the next free slot."""
    schedule = Frequency(60)
    next_due = schedule.next_due(GRID, GRID + seconds(150))
    assert next_due == GRID + seconds(180)

    ticks = [GRID + seconds(150 + 5 * i) for i in range(1, 17)]  # up to +230 s
    runs, after = simulate(schedule, ticks, next_due=next_due)

    assert runs == [GRID + seconds(175)]
    assert after == GRID + seconds(240)


def test_a_run_ending_exactly_on_a_grid_point_is_due_at_the_following_one() -> None:
    """The next slot is strictly after the end of the run."""
    assert Frequency(60).next_due(GRID, GRID) == GRID + seconds(60)
    assert Frequency(60).next_due(GRID, GRID + seconds(60)) == GRID + seconds(120)


def test_an_early_run_counts_for_its_slot() -> None:
    """A run that starts and ends inside the early window takes the slot it
    was due for: the next slot is one period later, not the same one."""
    next_due = Frequency(60).next_due(GRID, GRID - seconds(3))
    assert next_due == GRID + seconds(60)


@pytest.mark.parametrize("period", [60, 300, 3600, 86400, 7, 45])
def test_slots_are_on_the_epoch_grid_whenever_the_first_run_was(period) -> None:
    """Anchored at the Unix epoch: a first run at :37 is followed by :00."""
    schedule = Frequency(period)
    rng = random.Random(period)
    for _ in range(500):
        first = GRID + seconds(rng.uniform(0, 10 * 86400))
        next_due = schedule.next_due(first, first + seconds(rng.uniform(0, 2)))
        assert next_due.timestamp() % period == 0
        assert first < next_due <= first + seconds(period + 2)


def test_a_first_run_mid_minute_is_followed_by_the_next_whole_minute() -> None:
    """Not 60 s after the first run: on the minute."""
    first = GRID + seconds(37)
    assert Frequency(60).next_due(first, first + seconds(1)) == GRID + seconds(60)


@pytest.mark.parametrize("period", [0.5, 1.5, 2.5, 0.25, 7.3, 90.5])
def test_non_integer_frequencies_stay_on_their_grid(period: float) -> None:
    """Slots of a fractional period are multiples of it since the epoch."""
    schedule = Frequency(period)
    slot = schedule.next_due(GRID, GRID)
    for _ in range(1000):
        following = schedule.next_due(slot, slot)
        assert on_grid(following, schedule)
        assert following - slot == pytest.approx(schedule.period, abs=seconds(2e-6))
        slot = following


def test_a_fractional_period_moves_past_a_slot_that_ended_on_it() -> None:
    """Every 1.1 s: the slot after 12:00:01.3 is 12:00:02.4, not 12:00:01.3."""
    slot = GRID + seconds(1.3)  # 1.1 s times a whole number since the epoch
    assert Frequency(1.1).next_due(slot, slot) == GRID + seconds(2.4)


@pytest.mark.parametrize("period", [0.1, 1.1, 4.4, 1 / 3])
def test_next_due_is_always_after_the_slot_that_ran(period: float) -> None:
    """For any period, the slot after a run is strictly later than the run's
    slot; otherwise the same slot would be due again at once and run twice.
    """
    schedule = Frequency(period)
    rng = random.Random(7)
    repeated = []
    for _ in range(2000):
        start = GRID + seconds(rng.uniform(0, 1e6))
        slot = schedule.next_due(start, start)
        # The run finished a little before its slot (inside the early window).
        following = schedule.next_due(slot, slot - seconds(schedule.seconds / 20))
        if not following > slot:
            repeated.append(slot)
    assert repeated == []


def test_describe_names_the_period() -> None:
    """Whole seconds print without a decimal point; fractions as given."""
    assert Frequency(60).describe() == "every 60s"
    assert Frequency(60.0).describe() == "every 60s"
    assert Frequency(1.5).describe() == "every 1.5s"
