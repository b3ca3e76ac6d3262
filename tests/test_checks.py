"""Every configuration mistake is a system check with a stable ID and a hint.

The tick command runs the same validation and exits 2 with the same text.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import Error, run_checks
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import override_settings

from dumbwaiter import specs
from dumbwaiter.models import FunctionState
from tests.conftest import Children, runs_in

GOOD = {"function": "tests.functions.constant", "name": "good"}


def entry(**changes: Any) -> dict[str, Any]:
    """A valid entry with some keys changed; a value of ... drops the key."""
    result = {**GOOD, **changes}
    return {key: value for key, value in result.items() if value is not ...}


def dumbwaiter_messages() -> list[Any]:
    return [m for m in run_checks() if str(m.id).startswith("dumbwaiter.")]


# (settings, expected id, text the message must contain, text of the hint)
CASES: dict[str, tuple[dict[str, Any], str, str, str]] = {
    "list-is-a-dict": (
        {"DUMBWAITER_FUNCTION_LIST": GOOD},
        "E001",
        "must be a list of dicts, not dict",
        "'function': 'app.module.func'",
    ),
    "list-is-a-string": (
        {"DUMBWAITER_FUNCTION_LIST": "tests.functions.constant"},
        "E001",
        "not str",
        "'name': 'name'",
    ),
    "entry-not-a-dict": (
        {"DUMBWAITER_FUNCTION_LIST": [GOOD, "tests.functions.constant"]},
        "E002",
        "DUMBWAITER_FUNCTION_LIST[1] must be a dict, not str",
        "'function' and 'name'",
    ),
    "typo-in-a-key": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(frequncy=60)]},
        "E003",
        "unknown key 'frequncy'",
        "Did you mean 'frequency'?",
    ),
    "unknown-key-nothing-close": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(colour="red")]},
        "E003",
        "unknown key 'colour'",
        "Known keys: args, frequency, function, kwargs, name",
    ),
    "missing-name": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(name=...)]},
        "E004",
        "needs a 'name'",
        "unique 'name'",
    ),
    "empty-name": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(name="")]},
        "E004",
        "needs a 'name'",
        "unique 'name'",
    ),
    "blank-name": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(name="   ")]},
        "E004",
        "non-empty string",
        "unique 'name'",
    ),
    "name-not-a-string": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(name=5)]},
        "E004",
        "non-empty string",
        "unique 'name'",
    ),
    "duplicate-name": (
        {"DUMBWAITER_FUNCTION_LIST": [GOOD, entry(function="tests.functions.add")]},
        "E005",
        "the name 'good' is used by more than one entry",
        "its own name",
    ),
    "name-of-192-characters": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(name="n" * 192)]},
        "E006",
        "the name is 192 characters long; at most 191",
        "shorter name",
    ),
    "missing-function": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(function=...)]},
        "E007",
        "needs a 'function'",
        "'function': ",
    ),
    "function-attribute-missing": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(function="tests.functions.nope")]},
        "E008",
        "'tests.functions.nope' could not be imported",
        "dotted path",
    ),
    "function-module-missing": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(function="tests.no_such_module.f")]},
        "E008",
        "'tests.no_such_module.f' could not be imported",
        "dotted path",
    ),
    "function-module-raises-on-import": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(function="tests.raises_on_import.f")]},
        "E008",
        "'tests.raises_on_import.f' could not be imported",
        "dotted path",
    ),
    "function-not-callable": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(function="tests.functions.not_callable")]},
        "E009",
        "'tests.functions.not_callable' is not callable",
        "callable",
    ),
    "frequency-zero": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(frequency=0)]},
        "E010",
        "'frequency' must be a positive number of seconds, not 0",
        "seconds between runs",
    ),
    "frequency-negative": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(frequency=-1)]},
        "E010",
        "not -1",
        "seconds between runs",
    ),
    "frequency-a-string": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(frequency="60")]},
        "E010",
        "not '60'",
        "seconds between runs",
    ),
    "frequency-a-bool": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(frequency=True)]},
        "E010",
        "not True",
        "seconds between runs",
    ),
    "frequency-nan": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(frequency=math.nan)]},
        "E010",
        "not nan",
        "seconds between runs",
    ),
    "frequency-infinite": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(frequency=math.inf)]},
        "E010",
        "not inf",
        "seconds between runs",
    ),
    "saved-zero": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(saved=0)]},
        "E011",
        "'saved' must be a whole number of at least 1 (and at most 1000000), not 0",
        "how many past results",
    ),
    "saved-huge": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(saved=10**30)]},
        "E011",
        "not 1000000000000000000000000000000",
        "how many past results",
    ),
    "frequency-beyond-ten-years": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(frequency=1e12)]},
        "E010",
        "not 1000000000000.0",
        "seconds between runs",
    ),
    "retry-after-overflowing": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(retry_after=1e300)]},
        "E024",
        "not 1e+300",
        "how soon a failed run",
    ),
    "lease-overflowing": (
        {"DUMBWAITER_LEASE": 1e300},
        "E017",
        "not 1e+300",
        "dead host",
    ),
    "stale-after-huge": (
        {"DUMBWAITER_STALE_AFTER": 1e300},
        "E025",
        "not 1e+300",
        "dumbwaiter_status --check",
    ),
    "threaded-a-string": (
        {"DUMBWAITER_THREADED": "no"},
        "E027",
        "not 'no'",
        "without quotes",
    ),
    "saved-a-fraction": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(saved=1.5)]},
        "E011",
        "not 1.5",
        "how many past results",
    ),
    "args-a-string": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(args="x")]},
        "E012",
        "'args' must be a list or tuple, not str",
        "'args': [value]",
    ),
    "kwargs-a-list": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(kwargs=[])]},
        "E013",
        "'kwargs' must be a dict, not list",
        "{'name': value}",
    ),
    "default-frequency-zero": (
        {"DUMBWAITER_FUNCTION_LIST": [GOOD], "DUMBWAITER_DEFAULT_FREQUENCY": 0},
        "E010",
        "DUMBWAITER_DEFAULT_FREQUENCY must be a positive number of seconds, not 0",
        "for example 300",
    ),
    "default-frequency-a-string": (
        {"DUMBWAITER_FUNCTION_LIST": [GOOD], "DUMBWAITER_DEFAULT_FREQUENCY": "300"},
        "E010",
        "DUMBWAITER_DEFAULT_FREQUENCY",
        "for example 300",
    ),
    "default-saved-zero": (
        {"DUMBWAITER_FUNCTION_LIST": [GOOD], "DUMBWAITER_DEFAULT_SAVED": 0},
        "E011",
        "DUMBWAITER_DEFAULT_SAVED must be a whole number of at least 1, not 0",
        "for example 10",
    ),
    "default-saved-a-fraction": (
        {"DUMBWAITER_FUNCTION_LIST": [GOOD], "DUMBWAITER_DEFAULT_SAVED": 2.5},
        "E011",
        "DUMBWAITER_DEFAULT_SAVED",
        "for example 10",
    ),
    "serializer-does-not-import": (
        {"DUMBWAITER_SERIALIZER": "tests.no_such_serializer"},
        "E014",
        "DUMBWAITER_SERIALIZER 'tests.no_such_serializer' could not be imported",
        "dumbwaiter.serializers.pickler",
    ),
    "serializer-module-without-serializer": (
        {"DUMBWAITER_SERIALIZER": "tests.bad_serializer"},
        "E014",
        "'tests.bad_serializer' has no object named 'serializer'",
        "Define `serializer`",
    ),
    "serializer-module-raises-on-import": (
        {"DUMBWAITER_SERIALIZER": "tests.raises_on_import"},
        "E014",
        "DUMBWAITER_SERIALIZER 'tests.raises_on_import' could not be imported",
        "dumbwaiter.serializers.pickler",
    ),
    "serializer-not-a-path": (
        {"DUMBWAITER_SERIALIZER": None},
        "E014",
        "must be a dotted module path, not None",
        "dumbwaiter.serializers.json",
    ),
    "pickle-protocol-negative": (
        {"DUMBWAITER_PICKLE_PROTOCOL": -1},
        "E015",
        "DUMBWAITER_PICKLE_PROTOCOL must be a whole number from 0 to",
        "pickle.DEFAULT_PROTOCOL",
    ),
    "pickle-protocol-too-high": (
        {"DUMBWAITER_PICKLE_PROTOCOL": 99},
        "E015",
        "not 99",
        "pickle.DEFAULT_PROTOCOL",
    ),
    "pickle-protocol-a-string": (
        {"DUMBWAITER_PICKLE_PROTOCOL": "5"},
        "E015",
        "not '5'",
        "pickle.DEFAULT_PROTOCOL",
    ),
    "max-workers-zero": (
        {"DUMBWAITER_MAX_WORKERS": 0},
        "E016",
        "DUMBWAITER_MAX_WORKERS must be a whole number of at least 1, not 0",
        "e.g. 8",
    ),
    "max-workers-a-string": (
        {"DUMBWAITER_MAX_WORKERS": "8"},
        "E016",
        "not '8'",
        "e.g. 8",
    ),
    "lease-zero": (
        {"DUMBWAITER_LEASE": 0},
        "E017",
        "DUMBWAITER_LEASE must be a number of seconds of at least 1, not 0",
        "for example 60",
    ),
    "lease-under-a-second": (
        {"DUMBWAITER_LEASE": 0.5},
        "E017",
        "not 0.5",
        "for example 60",
    ),
    "lease-nan": (
        {"DUMBWAITER_LEASE": math.nan},
        "E017",
        "not nan",
        "for example 60",
    ),
    "lock-dir-not-a-path": (
        {"DUMBWAITER_LOCK_DIR": 5},
        "E018",
        "DUMBWAITER_LOCK_DIR must be a path, not int",
        "local filesystem",
    ),
    "frequency-and-schedule": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(frequency=60, schedule="* * * * *")]},
        "E019",
        "gives both 'frequency' and 'schedule'",
        "Keep one",
    ),
    "schedule-not-cron": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(schedule="every minute")]},
        "E020",
        "'schedule' 'every minute' is not a valid cron expression",
        "five fields",
    ),
    "schedule-out-of-range": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(schedule="61 * * * *")]},
        "E020",
        "'61 * * * *' is not a valid cron expression",
        "five fields",
    ),
    "unknown-time-zone": (
        {
            "DUMBWAITER_FUNCTION_LIST": [
                entry(schedule="0 6 * * *", timezone="Mars/Olympus")
            ]
        },
        "E021",
        "'timezone' 'Mars/Olympus' is not a known time zone",
        "IANA name",
    ),
    "time-zone-without-schedule": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(timezone="UTC")]},
        "E022",
        "'timezone' only applies to a cron 'schedule'",
        "Remove 'timezone'",
    ),
    "timeout-zero": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(timeout=0)]},
        "E023",
        "'timeout' must be a positive number of seconds, not 0",
        "the longest a run may take",
    ),
    "retry-after-a-string": (
        {"DUMBWAITER_FUNCTION_LIST": [entry(retry_after="10")]},
        "E024",
        "'retry_after' must be a positive number of seconds, not '10'",
        "how soon a failed run is tried again",
    ),
}


@pytest.mark.parametrize(
    ("config", "check_id", "text", "hint"), CASES.values(), ids=CASES.keys()
)
def test_each_mistake_is_one_check_error_with_its_id_and_a_hint(
    config: dict[str, Any], check_id: str, text: str, hint: str
) -> None:
    """The mistake yields exactly one dumbwaiter error: its ID, its text, a hint."""
    with override_settings(**config):
        messages = dumbwaiter_messages()

    assert [m.id for m in messages] == [f"dumbwaiter.{check_id}"]
    (message,) = messages
    assert isinstance(message, Error)
    assert text in message.msg
    assert hint in message.hint


@override_settings(
    DUMBWAITER_FUNCTION_LIST=[
        entry(name="n" * 191),
        {
            "function": "tests.functions.add",
            "name": "everything",
            "frequency": 0.5,
            "saved": 1,
            "args": (1,),
            "kwargs": {"b": 2},
        },
        {"function": "tests.functions.constant", "name": "list-args", "args": [3]},
        # A callable works as well as a dotted path.
        {"function": len, "name": "a callable", "args": [[1, 2]]},
        {
            "function": "tests.functions.constant",
            "name": "cron",
            "schedule": "*/5 * * * *",
            "timezone": "Europe/Berlin",
            "timeout": 30,
            "retry_after": 0.5,
        },
        {
            "function": "tests.functions.constant",
            "name": "seconds",
            "schedule": "* * * * * */10",
        },
    ],
    DUMBWAITER_DEFAULT_FREQUENCY=60.5,
    DUMBWAITER_DEFAULT_SAVED=1,
    DUMBWAITER_SERIALIZER="dumbwaiter.serializers.json",
    DUMBWAITER_PICKLE_PROTOCOL=0,
    DUMBWAITER_MAX_WORKERS=1,
    DUMBWAITER_LEASE=1,
    DUMBWAITER_LOCK_DIR=Path(tempfile.gettempdir()),
)
def test_a_clean_configuration_produces_no_messages() -> None:
    """Valid values at every edge (191-character name, saved 1, lease 1) pass."""
    assert dumbwaiter_messages() == []
    assert sorted(specs.validate().specs) == [
        "a callable",
        "cron",
        "everything",
        "list-args",
        "n" * 191,
        "seconds",
    ]


@override_settings(DUMBWAITER_FUNCTION_LIST=[])
def test_an_empty_list_produces_no_messages() -> None:
    """No functions configured is not an error."""
    assert dumbwaiter_messages() == []


@override_settings(
    DUMBWAITER_FUNCTION_LIST=[
        entry(name="first", frequency=0),
        entry(name="second", saved=0, args="x"),
        GOOD,
    ]
)
def test_every_mistake_is_reported_not_only_the_first() -> None:
    """Problems in several entries and fields are all listed, in order."""
    assert [m.id for m in dumbwaiter_messages()] == [
        "dumbwaiter.E010",
        "dumbwaiter.E011",
        "dumbwaiter.E012",
    ]
    registry = specs.validate()
    assert list(registry.specs) == ["good"]
    assert registry.broken_names == {"first", "second"}


@override_settings(DUMBWAITER_FUNCTION_LIST=[entry(frequency=0)])
def test_manage_py_check_fails_with_the_id_and_hint() -> None:
    """`manage.py check` stops on the error and prints its ID and hint."""
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")

    assert "(dumbwaiter.E010)" in str(raised.value)
    assert "HINT: Give the seconds between runs, for example 60." in str(raised.value)


@pytest.mark.django_db
@override_settings(
    DUMBWAITER_FUNCTION_LIST=[
        {"function": "tests.functions.constant", "name": "fine"},
        entry(name="bad", frequency=0),
        entry(name="typo", frequncy=60),
    ]
)
def test_tick_once_exits_2_with_every_problem_and_runs_nothing() -> None:
    """The tick refuses to start: exit code 2, each check message, no rows."""
    problems = specs.validate().problems
    assert [p.id for p in problems] == ["dumbwaiter.E010", "dumbwaiter.E003"]

    with pytest.raises(CommandError) as raised:
        call_command("dumbwaiter_tick", "--once")

    assert raised.value.returncode == 2
    message = str(raised.value)
    assert message.startswith("dumbwaiter is misconfigured; nothing was run:")
    for problem in problems:
        assert str(problem) in message
        assert problem.hint in message
    assert not FunctionState.objects.exists()


@pytest.mark.subprocess
def test_real_tick_exits_2_on_stderr_and_runs_nothing(children: Children, marker):
    """Run as cron would: exit 2, the problems on stderr, no function run."""
    runs = marker()
    functions = [
        {
            "function": "tests.functions.mark",
            "name": "fine",
            "kwargs": {"marker": str(runs)},
        },
        {"function": "tests.functions.constant", "name": "bad", "frequency": 0},
    ]
    with override_settings(DUMBWAITER_FUNCTION_LIST=functions):
        (problem,) = specs.validate().problems

    result = children.run(functions, "--once")

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "dumbwaiter is misconfigured; nothing was run:" in result.stderr
    assert str(problem) in result.stderr
    assert "Traceback" not in result.stderr
    assert runs_in(runs) == 0
    assert not FunctionState.objects.exists()
