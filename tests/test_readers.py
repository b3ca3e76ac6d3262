"""The read path: get_value, get_result and get_history."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import TestCase, override_settings

import dumbwaiter
from dumbwaiter import clock, readers
from dumbwaiter.exceptions import ConfigurationError, DumbwaiterError, UnknownFunction
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.readers import LastError, PastValue, Result
from dumbwaiter.serializers import get_serializer
from dumbwaiter.storage import seal
from dumbwaiter.tick import Tick
from tests.conftest import REPO

FUNCTIONS = [
    {"function": "tests.functions.constant", "name": "alpha"},
    {"function": "tests.functions.constant", "name": "beta", "saved": 3},
    {"function": "tests.functions.constant", "name": "broken", "frequency": 0},
]


def store(name: str, value: Any, *, at: datetime, **fields: Any) -> FunctionState:
    """Write a state row as a successful run would have left it."""
    values = {
        "status": Status.SUCCEEDED,
        "value": seal(name, get_serializer().serialize(value)),
        "value_computed_at": clock.to_db(at),
        **fields,
    }
    state, _ = FunctionState.objects.update_or_create(name=name, defaults=values)
    return state


def add_history(name: str, value: Any, *, at: datetime) -> None:
    HistoryEntry.objects.create(
        name=name,
        value=seal(name, get_serializer().serialize(value)),
        computed_at=clock.to_db(at),
        duration=0.25,
    )


@override_settings(DUMBWAITER_FUNCTION_LIST=FUNCTIONS)
class GetValueTests(TestCase):
    def test_returns_the_newest_value_after_each_run(self) -> None:
        """Each run replaces the value readers get."""
        with tempfile.TemporaryDirectory() as locks:
            moment = datetime(2100, 1, 1, tzinfo=UTC)
            entry = {"function": "tests.functions.constant", "name": "alpha"}
            for value in (1, {"two": [2]}, "three"):
                moment += timedelta(seconds=300)
                with override_settings(
                    DUMBWAITER_FUNCTION_LIST=[{**entry, "args": [value]}]
                ):
                    tick = Tick(
                        threaded=False, lock_dir=locks, now=lambda at=moment: at
                    )
                    assert tick.run().succeeded == ["alpha"]
                    assert dumbwaiter.get_value("alpha") == value

    def test_a_known_function_never_computed_gives_the_default(self) -> None:
        """No row, or a row without a value: the default (None if not given)."""
        assert dumbwaiter.get_value("alpha") is None
        assert dumbwaiter.get_value("alpha", default=[]) == []

        FunctionState.objects.create(name="alpha", status=Status.FAILED)
        assert dumbwaiter.get_value("alpha", default="later") == "later"

    def test_a_stored_falsy_value_is_returned_not_the_default(self) -> None:
        """None, 0 and empty values are values."""
        for value in (0, "", [], None, False):
            store("alpha", value, at=clock.now())
            assert dumbwaiter.get_value("alpha", default="default") == value

    def test_an_unknown_name_raises_unknown_function_naming_the_known_ones(
        self,
    ) -> None:
        """A LookupError listing the configured names; no query is made."""
        with self.assertNumQueries(0), pytest.raises(UnknownFunction) as raised:
            dumbwaiter.get_value("gamma")

        error = raised.value
        assert isinstance(error, LookupError)
        assert isinstance(error, DumbwaiterError)
        assert error.name == "gamma"
        assert error.known == ["alpha", "beta"]
        assert str(error) == (
            "'gamma' is not in DUMBWAITER_FUNCTION_LIST "
            "(known functions: 'alpha', 'beta')"
        )

    @override_settings(DUMBWAITER_FUNCTION_LIST=[])
    def test_unknown_function_says_none_when_nothing_is_configured(self) -> None:
        """With an empty list the message says so."""
        with pytest.raises(UnknownFunction, match=r"known functions: none"):
            dumbwaiter.get_value("alpha")

    def test_get_value_is_one_query(self) -> None:
        """One SELECT, with or without a stored value."""
        dumbwaiter.get_value("beta")  # the registry is cached before counting
        with self.assertNumQueries(1):
            assert dumbwaiter.get_value("alpha", default=5) == 5
        store("alpha", {"big": list(range(1000))}, at=clock.now())
        with self.assertNumQueries(1):
            assert dumbwaiter.get_value("alpha") == {"big": list(range(1000))}

    def test_a_misconfigured_entry_raises_configuration_error(self) -> None:
        """Its name is known but broken: every reader says to run check."""
        for read in (dumbwaiter.get_value, dumbwaiter.get_result):
            with pytest.raises(ConfigurationError, match=r"manage\.py check"):
                read("broken")
        with pytest.raises(ConfigurationError) as raised:
            dumbwaiter.get_history("broken")
        assert isinstance(raised.value, ImproperlyConfigured)
        assert "'broken' is misconfigured" in str(raised.value)

    @override_settings(
        DUMBWAITER_FUNCTION_LIST=[
            *FUNCTIONS,
            {"function": "tests.raises_on_import.f", "name": "unimportable"},
        ]
    )
    def test_one_entry_that_fails_to_import_does_not_break_the_others(
        self,
    ) -> None:
        """A function module that raises on import makes only its own name a
        ConfigurationError; views reading other values keep working."""
        store("alpha", "a", at=clock.now())

        assert dumbwaiter.get_value("alpha") == "a"
        with pytest.raises(ConfigurationError):
            dumbwaiter.get_value("unimportable")

    def test_settings_changes_are_seen(self) -> None:
        """The cached list of names follows override_settings both ways."""
        store("alpha", "a", at=clock.now())
        store("delta", "d", at=clock.now())
        assert dumbwaiter.get_value("alpha") == "a"
        with pytest.raises(UnknownFunction):
            dumbwaiter.get_value("delta")

        renamed = [{"function": "tests.functions.constant", "name": "delta"}]
        with override_settings(DUMBWAITER_FUNCTION_LIST=renamed):
            assert dumbwaiter.get_value("delta") == "d"
            with pytest.raises(UnknownFunction, match="known functions: 'delta'"):
                dumbwaiter.get_value("alpha")

        assert dumbwaiter.get_value("alpha") == "a"
        with pytest.raises(UnknownFunction):
            dumbwaiter.get_value("delta")

    def test_the_serializer_setting_is_seen(self) -> None:
        """A payload is read back with the serializer configured now."""
        with override_settings(DUMBWAITER_SERIALIZER="dumbwaiter.serializers.json"):
            store("alpha", {"n": [1, 2]}, at=clock.now())
            payload = bytes(FunctionState.objects.get(name="alpha").value)
            assert payload.endswith(b'{"n":[1,2]}')
            assert dumbwaiter.get_value("alpha") == {"n": [1, 2]}


@override_settings(DUMBWAITER_FUNCTION_LIST=FUNCTIONS)
class GetResultTests(TestCase):
    def test_a_successful_run(self) -> None:
        """Value, when it was computed, status ok, no error, its age."""
        computed = clock.now() - timedelta(seconds=90)
        store("alpha", [1, 2], at=computed)

        with self.assertNumQueries(1):
            result = dumbwaiter.get_result("alpha")

        assert isinstance(result, Result)
        assert result.name == "alpha"
        assert result.value == [1, 2]
        assert result.computed_at == computed
        assert result.computed_at.tzinfo is not None
        assert result.status == Status.SUCCEEDED
        assert result.error is None
        assert 90 <= result.age < 90 + 3600

    def test_a_failed_run_keeps_the_last_value_and_describes_the_error(self) -> None:
        """The newest good value, status failed, and the error's details."""
        computed = clock.now() - timedelta(seconds=600)
        failed_at = clock.now() - timedelta(seconds=5)
        store(
            "alpha",
            "good",
            at=computed,
            status=Status.FAILED,
            error_class="ValueError",
            error_message="boom",
            error_traceback="Traceback (most recent call last):\nValueError: boom\n",
            error_at=clock.to_db(failed_at),
        )

        result = dumbwaiter.get_result("alpha")

        assert result.value == "good"
        assert result.computed_at == computed
        assert result.status == Status.FAILED
        assert result.error == LastError(
            exception_class="ValueError",
            message="boom",
            traceback="Traceback (most recent call last):\nValueError: boom\n",
            at=failed_at,
        )
        assert 600 <= result.age < 600 + 3600

    def test_a_success_after_a_failure_keeps_the_last_error(self) -> None:
        """The error stays readable until it is replaced by another one."""
        store("alpha", "fine", at=clock.now(), error_class="KeyError")

        result = dumbwaiter.get_result("alpha")

        assert result.status == Status.SUCCEEDED
        assert result.error is not None
        assert result.error.exception_class == "KeyError"

    def test_a_function_never_run(self) -> None:
        """No row: nothing known yet, status never."""
        assert dumbwaiter.get_result("alpha") == Result(
            "alpha", None, None, Status.NEVER_RUN, None, None
        )

    def test_a_function_with_a_row_but_no_run(self) -> None:
        """A row the planner created (status never): the same as no row."""
        FunctionState.objects.create(name="alpha")

        result = dumbwaiter.get_result("alpha")

        assert (result.value, result.computed_at, result.age) == (None, None, None)
        assert result.status == Status.NEVER_RUN
        assert result.error is None

    def test_an_unknown_name_raises(self) -> None:
        """The same UnknownFunction as get_value."""
        with pytest.raises(UnknownFunction):
            dumbwaiter.get_result("gamma")


@override_settings(DUMBWAITER_FUNCTION_LIST=FUNCTIONS)
class GetHistoryTests(TestCase):
    def test_newest_first_with_time_and_duration(self) -> None:
        """Past values come newest first, each with when and how long."""
        base = datetime(2026, 1, 1, tzinfo=UTC)
        for minute in range(3):
            add_history("beta", minute, at=base + timedelta(minutes=minute))
        add_history("alpha", "other function", at=base)

        history = dumbwaiter.get_history("beta")

        assert history == [
            PastValue(2, base + timedelta(minutes=2), 0.25),
            PastValue(1, base + timedelta(minutes=1), 0.25),
            PastValue(0, base, 0.25),
        ]

    def test_the_tick_keeps_saved_values_and_get_history_returns_them(
        self,
    ) -> None:
        """Five runs of a function with saved=3: the newest three, newest first."""
        with tempfile.TemporaryDirectory() as locks:
            moment = datetime(2100, 1, 1, tzinfo=UTC)
            for value in range(1, 6):
                moment += timedelta(seconds=300)
                entry = {**FUNCTIONS[1], "args": [value]}
                with override_settings(DUMBWAITER_FUNCTION_LIST=[entry]):
                    tick = Tick(
                        threaded=False, lock_dir=locks, now=lambda at=moment: at
                    )
                    assert tick.run().succeeded == ["beta"]

        assert [past.value for past in dumbwaiter.get_history("beta")] == [5, 4, 3]

    def test_a_limit_returns_the_newest_few(self) -> None:
        """limit=2 gives the two newest."""
        base = datetime(2026, 1, 1, tzinfo=UTC)
        for minute in range(3):
            add_history("beta", minute, at=base + timedelta(minutes=minute))

        with self.assertNumQueries(1):
            assert [p.value for p in dumbwaiter.get_history("beta", limit=2)] == [2, 1]

    def test_never_more_than_saved_even_with_more_rows_stored(self) -> None:
        """After ``saved`` was lowered (from 10 to 3) and before the next run
        trims, readers still get at most ``saved`` values: the newest."""
        base = datetime(2026, 1, 1, tzinfo=UTC)
        for minute in range(10):
            add_history("beta", minute, at=base + timedelta(minutes=minute))

        assert [p.value for p in dumbwaiter.get_history("beta")] == [9, 8, 7]

    def test_no_history_for_a_function_never_run(self) -> None:
        """An empty list, not an error."""
        assert dumbwaiter.get_history("alpha") == []

    def test_an_unknown_name_raises(self) -> None:
        """The same UnknownFunction as get_value."""
        with pytest.raises(UnknownFunction):
            dumbwaiter.get_history("gamma")


def test_the_package_exposes_the_readers_and_exceptions() -> None:
    """Every name in dumbwaiter.__all__ is there and is the real object."""
    assert set(dumbwaiter.__all__) == {
        "ConfigurationError",
        "DumbwaiterError",
        "LastError",
        "PastValue",
        "Result",
        "UnknownFunction",
        "aget_history",
        "aget_result",
        "aget_value",
        "get_history",
        "get_result",
        "get_value",
    }
    for name in dumbwaiter.__all__:
        assert getattr(dumbwaiter, name) is (
            getattr(readers, name, None) or getattr(dumbwaiter.exceptions, name)
        )
    assert issubclass(ConfigurationError, ImproperlyConfigured)
    assert issubclass(UnknownFunction, LookupError)
    with pytest.raises(AttributeError, match="no attribute 'get_valeu'"):
        dumbwaiter.get_valeu  # noqa: B018


@pytest.mark.subprocess
def test_importing_the_package_needs_no_settings() -> None:
    """`import dumbwaiter` works before Django is set up (in settings.py)."""
    code = (
        "import sys, dumbwaiter; "
        "assert 'dumbwaiter.readers' not in sys.modules; "
        "assert 'django.db.models' not in sys.modules; "
        "print(dumbwaiter.UnknownFunction.__name__)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "UnknownFunction\n"
