"""``manage.py dumbwaiter_status`` (table, --json, --check), staleness, and
``get_value(max_age=...)``: what operators and views learn about freshness."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import dumbwaiter
from dumbwaiter import clock, specs
from dumbwaiter.models import FunctionState, Status
from dumbwaiter.serializers import get_serializer
from dumbwaiter.status import collect
from dumbwaiter.storage import seal
from dumbwaiter.tick import Tick

pytestmark = pytest.mark.django_db

# A whole hour in the future: a grid point of every frequency used here.
START = datetime(2100, 1, 1, 12, 0, tzinfo=UTC)


def entry(name: str, **extra: Any) -> dict[str, Any]:
    return {"function": "tests.functions.constant", "name": name, **extra}


def payload(name: str, value: Any) -> bytes:
    return seal(name, get_serializer().serialize(value))


def store(name: str, value: Any, *, at: datetime, **fields: Any) -> FunctionState:
    """A state row as a successful run computed at ``at`` would leave it."""
    values = {
        "status": Status.SUCCEEDED,
        "value": payload(name, value),
        "value_computed_at": at,
        "last_started": at,
        "last_finished": at + timedelta(seconds=1),
        "duration": 1.0,
        **fields,
    }
    values = {
        key: clock.to_db(value) if isinstance(value, datetime) else value
        for key, value in values.items()
    }
    state, _ = FunctionState.objects.update_or_create(name=name, defaults=values)
    return state


def status(*args: str) -> tuple[str, str, int]:
    """Run dumbwaiter_status in process: stdout, stderr and the exit code."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("dumbwaiter_status", *args, stdout=out, stderr=err)
    except CommandError as error:
        err.write(str(error))
        return out.getvalue(), err.getvalue(), error.returncode
    return out.getvalue(), err.getvalue(), 0


def lines_by_name(out: str) -> dict[str, str]:
    """The table's data lines, keyed by their first cell."""
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "schedule"], out
    return {line.split()[0]: line for line in lines[1:]}


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


# -- the table ----------------------------------------------------------------


def test_one_line_per_function_with_every_column() -> None:
    """Name, schedule, last run, next due, duration, status, age and the
    last error's first line; one header, then one line per configured
    function in settings order, including one that never ran."""
    now = clock.now().replace(microsecond=0)
    entries = [
        entry("zeta-fresh", frequency=60),
        entry("alpha-broken", frequency=3600),
        entry("mid-newcomer", schedule="0 6 * * *"),
    ]
    store(
        "zeta-fresh",
        1,
        at=now - timedelta(seconds=30),
        next_due=now + timedelta(seconds=30),
        duration=0.412,
    )
    store(
        "alpha-broken",
        2,
        at=now - timedelta(hours=5),
        last_started=now - timedelta(seconds=10),
        next_due=now + timedelta(seconds=3590),
        duration=1.5,
        status=Status.FAILED,
        error_class="ValueError",
        error_message="disk full\nsecond line of the message",
        error_at=now - timedelta(seconds=9),
    )

    with override_settings(DUMBWAITER_FUNCTION_LIST=entries):
        out, err, code = status()

    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 4
    assert [line.split()[0] for line in lines[1:]] == [
        "zeta-fresh",
        "alpha-broken",
        "mid-newcomer",
    ]
    header = lines[0]
    for column in ("name", "schedule", "last run", "next due", "status", "age"):
        assert column in header
    rows = lines_by_name(out)

    fresh = rows["zeta-fresh"]
    assert "every 60s" in fresh
    assert when(now - timedelta(seconds=30)) in fresh
    assert when(now + timedelta(seconds=30)) in fresh
    assert "0.412s" in fresh
    assert re.search(r"\bok\b", fresh)
    assert re.search(r"\b0:00:3\d\b", fresh), fresh
    assert "stale" not in fresh

    broken = rows["alpha-broken"]
    assert "every 3600s" in broken
    assert when(now - timedelta(seconds=10)) in broken
    assert when(now + timedelta(seconds=3590)) in broken
    assert "1.500s" in broken
    assert re.search(r"\bfailed\b", broken)
    assert re.search(r"\b5:00:\d\d \(stale\)", broken), broken
    assert broken.rstrip().endswith("ValueError: disk full")
    assert "second line" not in out

    newcomer = rows["mid-newcomer"]
    assert "cron '0 6 * * *' (UTC)" in newcomer
    assert re.search(r"\bnever\b", newcomer)
    assert "ValueError" not in newcomer


def test_a_running_function_names_its_claimant() -> None:
    """A row under a live claim shows where it runs."""
    now = clock.now()
    store(
        "busy",
        1,
        at=now - timedelta(seconds=5),
        status=Status.RUNNING,
        lease_token="a" * 32,
        lease_expires=now + timedelta(seconds=60),
        claimed_by="worker-7:4242",
    )
    with override_settings(DUMBWAITER_FUNCTION_LIST=[entry("busy", frequency=60)]):
        out, _, code = status()

    assert code == 0
    assert "running on worker-7:4242" in lines_by_name(out)["busy"]


def test_a_value_stamped_by_a_clock_that_runs_ahead_has_no_negative_age() -> None:
    """Hosts' clocks differ by a few seconds: a value computed "5 s in the
    future" is shown as brand new, not as an age of minus one day."""
    store("skewed", 1, at=clock.now() + timedelta(seconds=5))

    with override_settings(DUMBWAITER_FUNCTION_LIST=[entry("skewed")]):
        out, _, code = status()

    assert code == 0
    line = lines_by_name(out)["skewed"]
    assert "day" not in line, line
    assert re.search(r"\b0:00:00\b", line), line


def test_rows_of_functions_no_longer_configured_are_left_out() -> None:
    """Only configured functions are listed, even if other rows exist."""
    now = clock.now()
    store("kept", 1, at=now)
    store("removed", 1, at=now, status=Status.FAILED, error_class="KeyError")

    with override_settings(DUMBWAITER_FUNCTION_LIST=[entry("kept")]):
        out, _, code = status()
        check_out, _, check_code = status("--check")

    assert code == 0
    assert list(lines_by_name(out)) == ["kept"]
    assert check_code == 0
    assert "removed" not in check_out


# -- JSON -----------------------------------------------------------------------


def test_json_gives_the_same_facts_as_the_table() -> None:
    """--json: a list in settings order, one object per function, with the
    schedule, times (ISO 8601), duration, status, age, staleness and error."""
    now = clock.now().replace(microsecond=0)
    store(
        "report",
        {"n": 1},
        at=now - timedelta(seconds=120),
        next_due=now + timedelta(seconds=180),
        duration=2.25,
        status=Status.FAILED,
        error_class="tests.Error",
        error_message="first\nsecond",
        error_at=now - timedelta(seconds=1),
    )
    entries = [entry("report", frequency=300), entry("newcomer", frequency=60)]

    with override_settings(DUMBWAITER_FUNCTION_LIST=entries):
        out, err, code = status("--json")

    assert code == 0, err
    data = json.loads(out)
    assert [item["name"] for item in data] == ["report", "newcomer"]
    report, newcomer = data
    assert report["schedule"] == "every 300s"
    assert report["status"] == "failed"
    assert datetime.fromisoformat(report["last_started"]) == now - timedelta(
        seconds=120
    )
    assert datetime.fromisoformat(report["next_due"]) == now + timedelta(seconds=180)
    assert datetime.fromisoformat(report["computed_at"]) == now - timedelta(seconds=120)
    assert report["duration"] == 2.25
    assert 120 <= report["age"] < 120 + 600
    assert report["stale"] is False
    assert report["error"] == "tests.Error: first"
    assert report["healthy"] is False

    assert newcomer["status"] == "never"
    assert newcomer["last_started"] is None
    assert newcomer["computed_at"] is None
    assert newcomer["age"] is None
    assert newcomer["stale"] is True
    assert newcomer["error"] == ""


# -- --check ------------------------------------------------------------------


def test_check_passes_silently_when_every_function_is_healthy() -> None:
    """Fresh values from successful runs (or a run in progress): exit 0, no
    output."""
    now = clock.now()
    store("a", 1, at=now - timedelta(seconds=10))
    store(
        "b",
        2,
        at=now - timedelta(seconds=10),
        status=Status.RUNNING,
        lease_token="b" * 32,
        lease_expires=now + timedelta(seconds=60),
    )
    entries = [entry("a", frequency=60), entry("b", frequency=60)]

    with override_settings(DUMBWAITER_FUNCTION_LIST=entries):
        out, err, code = status("--check")

    assert code == 0, err
    assert out == ""


def test_check_exits_1_listing_only_the_offenders() -> None:
    """Stale, never computed, failed or timed out: exit 1, and only those are
    printed, each with the reason."""
    now = clock.now()
    entries = [
        entry("healthy", frequency=60),
        entry("stale", frequency=60),
        entry("never", frequency=60),
        entry("failed", frequency=60),
        entry("timed-out", frequency=60),
        # An old failure does not matter once a run has succeeded.
        entry("recovered", frequency=60),
    ]
    store("healthy", 1, at=now - timedelta(seconds=20))
    store("stale", 1, at=now - timedelta(seconds=600))
    FunctionState.objects.create(name="never", status=Status.FAILED)
    store(
        "failed",
        1,
        at=now - timedelta(seconds=20),
        status=Status.FAILED,
        error_class="ValueError",
        error_message="boom",
    )
    store(
        "timed-out",
        1,
        at=now - timedelta(seconds=20),
        status=Status.TIMED_OUT,
        error_class="dumbwaiter.exceptions.FunctionTimeout",
        error_message="too slow",
    )
    store(
        "recovered",
        1,
        at=now - timedelta(seconds=20),
        error_class="KeyError",
        error_message="old",
    )

    with override_settings(DUMBWAITER_FUNCTION_LIST=entries):
        out, err, code = status("--check")
        json_out, _, json_code = status("--check", "--json")

    assert code == 1
    assert set(lines_by_name(out)) == {"stale", "never", "failed", "timed-out"}
    assert "healthy" not in out and "recovered" not in out
    assert "4 function(s) unhealthy" in err
    assert "stale: stale" in err
    assert "never: last run failed, never computed" in err
    assert "failed: last run failed" in err
    assert "timed-out: last run timed out" in err

    assert json_code == 1
    assert [item["name"] for item in json.loads(json_out)] == [
        "stale",
        "never",
        "failed",
        "timed-out",
    ]


def test_check_fails_for_a_function_that_never_produced_a_value() -> None:
    """No row at all counts as never computed."""
    with override_settings(DUMBWAITER_FUNCTION_LIST=[entry("new")]):
        out, err, code = status("--check")

    assert code == 1
    assert "new: never computed" in err
    assert list(lines_by_name(out)) == ["new"]


@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_check_exit_codes_of_the_real_command(children) -> None:
    """As a health check runs it: exit 1 with the offenders on stdout and
    the reason on stderr, then exit 0 once the value is fresh."""
    functions = [entry("answer", frequency=3600)]

    failing = children.run(functions, "--check", command="dumbwaiter_status")
    assert failing.returncode == 1, failing.stderr
    assert failing.stdout.splitlines()[1].split()[0] == "answer"
    assert "answer: never computed" in failing.stderr

    store("answer", 42, at=clock.now())
    passing = children.run(functions, "--check", command="dumbwaiter_status")
    assert passing.returncode == 0, passing.stderr
    assert passing.stdout == passing.stderr == ""


# -- staleness ----------------------------------------------------------------


def stale_at_moments(
    schedule_entry: dict[str, Any], computed: datetime, moments: list[datetime]
) -> list[bool]:
    with override_settings(DUMBWAITER_FUNCTION_LIST=[schedule_entry]):
        registry = specs.registry()
        store(schedule_entry["name"], 1, at=computed)
        return [collect(registry, now=moment)[0].stale for moment in moments]


def test_a_value_turns_stale_stale_after_periods_from_its_slot() -> None:
    """Minutely, computed at 12:00:30 (the 12:00 run): with the default
    DUMBWAITER_STALE_AFTER of 2 it is fresh until 12:02, i.e. until one
    whole scheduled run (12:01) has been missed."""
    computed = START + timedelta(seconds=30)
    moments = [
        computed,
        START + timedelta(seconds=90),
        START + timedelta(seconds=120) - timedelta(microseconds=1),
        START + timedelta(seconds=120),
        START + timedelta(hours=1),
    ]

    assert stale_at_moments(entry("m", frequency=60), computed, moments) == [
        False,
        False,
        False,
        True,
        True,
    ]


@override_settings(DUMBWAITER_STALE_AFTER=5)
def test_stale_after_is_a_setting() -> None:
    """With 5, the same value stays fresh four periods past its next slot."""
    computed = START + timedelta(seconds=30)
    moments = [
        START + timedelta(seconds=299),
        START + timedelta(seconds=300),
    ]

    assert stale_at_moments(entry("m", frequency=60), computed, moments) == [
        False,
        True,
    ]


def test_a_weekday_cron_value_is_not_stale_over_the_weekend() -> None:
    """Weekdays at 06:00: Friday's value is fresh through Saturday, Sunday
    and Monday's run, and stale once Tuesday's run is due too."""
    friday = datetime(2099, 12, 25, 6, 0, 10, tzinfo=UTC)
    assert friday.strftime("%A") == "Friday"
    moments = [
        friday + timedelta(days=1),
        friday + timedelta(days=3, seconds=3600),
        datetime(2099, 12, 29, 5, 59, 59, tzinfo=UTC),
        datetime(2099, 12, 29, 6, 0, 0, tzinfo=UTC),
    ]

    assert stale_at_moments(
        entry("weekday", schedule="0 6 * * 1-5"), friday, moments
    ) == [False, False, False, True]


def test_a_never_computed_function_is_stale_whatever_its_status() -> None:
    """A row that never stored a value, even one that is running now."""
    FunctionState.objects.create(
        name="first", status=Status.RUNNING, lease_token="c" * 32
    )
    with override_settings(DUMBWAITER_FUNCTION_LIST=[entry("first")]):
        (result,) = collect(specs.registry(), now=START)

    assert result.stale is True
    assert result.healthy is False
    assert result.computed_at is None


# -- one query ------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["--json"], ["--check"]], ids=str)
def test_status_is_one_query(args: list[str]) -> None:
    """Every mode reads all state rows in one SELECT."""
    now = clock.now()
    store("a", 1, at=now)
    store("b", 1, at=now, status=Status.FAILED, error_class="ValueError")
    entries = [entry("a"), entry("b"), entry("c")]

    with (
        override_settings(DUMBWAITER_FUNCTION_LIST=entries),
        CaptureQueriesContext(connection) as queries,
    ):
        out, _, code = status(*args)

    assert len(queries) == 1, [q["sql"] for q in queries]
    assert code == (1 if args == ["--check"] else 0)
    assert "b" in out


@pytest.mark.parametrize("args", [[], ["--json"], ["--check"]], ids=str)
def test_status_of_1000_functions_is_still_one_query(args: list[str]) -> None:
    """A thousand configured functions, each with a state row (every tenth
    failed): one query, one line (or object) per function, and --check
    names exactly the failed ones."""
    now = clock.now()
    names = [f"f{i:04d}" for i in range(1000)]
    entries = [entry(name, frequency=60) for name in names]
    FunctionState.objects.bulk_create(
        [
            FunctionState(
                name=name,
                status=Status.FAILED if i % 10 == 0 else Status.SUCCEEDED,
                value=payload(name, i),
                value_computed_at=clock.to_db(now - timedelta(seconds=5)),
                last_started=clock.to_db(now - timedelta(seconds=5)),
                next_due=clock.to_db(now + timedelta(seconds=55)),
                duration=0.5,
                error_class="ValueError" if i % 10 == 0 else "",
                error_message="boom" if i % 10 == 0 else "",
            )
            for i, name in enumerate(names)
        ]
    )
    failed = names[::10]

    with (
        override_settings(DUMBWAITER_FUNCTION_LIST=entries),
        CaptureQueriesContext(connection) as queries,
    ):
        out, _, code = status(*args)

    assert len(queries) == 1, [q["sql"][:200] for q in queries]
    if args == ["--json"]:
        assert [item["name"] for item in json.loads(out)] == names
        assert code == 0
    elif args == ["--check"]:
        assert list(lines_by_name(out)) == failed
        assert code == 1
    else:
        assert list(lines_by_name(out)) == names
        assert code == 0


# -- get_value(max_age=...) -------------------------------------------------------


@override_settings(DUMBWAITER_FUNCTION_LIST=[entry("report")])
def test_get_value_max_age_gives_the_default_for_an_older_value() -> None:
    """A value 100 s old: max_age 50 (seconds or timedelta) gives the
    default, max_age 200 the value; each read is one query."""
    store("report", "figures", at=clock.now() - timedelta(seconds=100))
    dumbwaiter.get_value("report")  # the registry is cached before counting

    cases = [
        (50, "too old"),
        (50.5, "too old"),
        (timedelta(seconds=50), "too old"),
        (200, "figures"),
        (timedelta(minutes=5), "figures"),
        (None, "figures"),
    ]
    for max_age, expected in cases:
        with CaptureQueriesContext(connection) as queries:
            got = dumbwaiter.get_value("report", default="too old", max_age=max_age)
        assert got == expected, max_age
        assert len(queries) == 1, max_age


@override_settings(DUMBWAITER_FUNCTION_LIST=[entry("report")])
def test_get_value_max_age_without_a_value_gives_the_default() -> None:
    """Never computed, or a row without a value: the default, one query."""
    dumbwaiter.get_value("report")
    with CaptureQueriesContext(connection) as queries:
        assert dumbwaiter.get_value("report", "none", max_age=3600) == "none"
    assert len(queries) == 1

    FunctionState.objects.create(name="report", status=Status.FAILED)
    with CaptureQueriesContext(connection) as queries:
        assert dumbwaiter.get_value("report", "none", max_age=3600) == "none"
    assert len(queries) == 1


@override_settings(DUMBWAITER_FUNCTION_LIST=[entry("report")])
def test_get_value_max_age_keeps_a_failed_runs_older_value_out() -> None:
    """A failed run does not make the last good value younger: it is judged
    by when it was computed."""
    store(
        "report",
        "old",
        at=clock.now() - timedelta(seconds=600),
        status=Status.FAILED,
        last_started=clock.now(),
        error_class="ValueError",
    )

    assert dumbwaiter.get_value("report", "stale", max_age=60) == "stale"
    assert dumbwaiter.get_value("report", "stale", max_age=6000) == "old"


@override_settings(
    DUMBWAITER_FUNCTION_LIST=[entry("cached", args=["in the cache"])],
    DUMBWAITER_STORAGE="cache:values",
    CACHES={
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "values": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "dumbwaiter-test-status-max-age",
        },
    },
)
def test_get_value_max_age_with_cache_storage(tmp_path) -> None:
    """With the cache backend the value's own time decides too, and the read
    costs no query."""
    computed = clock.now() - timedelta(seconds=100)
    report = Tick(threaded=False, lock_dir=str(tmp_path), now=lambda: computed).run()
    assert report.succeeded == ["cached"]
    dumbwaiter.get_value("cached")

    with CaptureQueriesContext(connection) as queries:
        assert dumbwaiter.get_value("cached", "old", max_age=50) == "old"
        assert dumbwaiter.get_value("cached", "old", max_age=200) == "in the cache"
    assert len(queries) == 0
