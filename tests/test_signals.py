"""Signals sent after a run's outcome is committed, and how failures are
logged: once, with the traceback."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.dispatch import Signal
from django.test import override_settings

import dumbwaiter
from dumbwaiter import signals
from dumbwaiter.models import FunctionState, Status
from dumbwaiter.specs import FunctionSpec
from dumbwaiter.tick import Tick, TickReport

pytestmark = pytest.mark.django_db(transaction=True)

START = datetime(2100, 1, 1, 12, 0, tzinfo=UTC)


def functions(*entries: dict[str, Any]) -> override_settings:
    return override_settings(DUMBWAITER_FUNCTION_LIST=list(entries))


def committed_state(name: str) -> dict[str, Any] | None:
    """The row as another connection sees it: only what is committed."""
    seen: dict[str, Any] = {}

    def read() -> None:
        try:
            row = FunctionState.objects.filter(name=name).values(
                "status", "lease_token", "value_computed_at"
            )
            seen["row"] = row.first()
        finally:
            connections.close_all()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(timeout=30)
    return seen.get("row")


class Receiver:
    """Records every call; optionally reads the committed row or raises."""

    def __init__(self, raises: bool = False, read_row: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.raises = raises
        self.read_row = read_row

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal")
        if self.read_row:
            kwargs["committed"] = committed_state(kwargs["name"])
        self.calls.append({"sender": sender, **kwargs})
        if self.raises:
            raise RuntimeError(f"receiver broke on {kwargs['name']}")


@pytest.fixture
def connect() -> Iterator[Callable[[Signal, Receiver], Receiver]]:
    connected: list[tuple[Signal, Callable[..., None]]] = []

    def attach(signal: Signal, receiver: Receiver) -> Receiver:
        # A plain function, as receivers usually are (Django's own error log
        # for a failing receiver reads its __qualname__).
        def handler(sender: Any, **kwargs: Any) -> None:
            receiver(sender, **kwargs)

        signal.connect(handler, weak=False)
        connected.append((signal, handler))
        return receiver

    yield attach
    for signal, handler in connected:
        signal.disconnect(handler)


@pytest.fixture
def tick(tmp_path) -> Callable[..., TickReport]:
    def run(at: datetime = START, **kwargs: Any) -> TickReport:
        kwargs.setdefault("threaded", True)
        return Tick(lock_dir=str(tmp_path), now=lambda: at, **kwargs).run()

    return run


# -- value_stored and run_failed ------------------------------------------------


def test_value_stored_is_sent_once_after_the_value_is_committed(tick, connect) -> None:
    """With the spec as sender: name, the value as returned, computed_at,
    duration; another connection already sees the stored row; run_failed is
    not sent."""
    stored = connect(signals.value_stored, Receiver(read_row=True))
    failed = connect(signals.run_failed, Receiver())

    with functions(
        {"function": "tests.functions.constant", "name": "answer", "args": [[1, 2]]}
    ):
        assert tick().succeeded == ["answer"]

    (call,) = stored.calls
    assert isinstance(call["sender"], FunctionSpec)
    assert call["sender"].name == "answer"
    assert call["name"] == "answer"
    assert call["value"] == [1, 2]
    assert call["computed_at"] == START
    assert isinstance(call["duration"], float) and call["duration"] >= 0
    assert call["committed"]["status"] == Status.SUCCEEDED
    assert call["committed"]["lease_token"] is None
    assert call["committed"]["value_computed_at"] is not None
    assert failed.calls == []


def test_run_failed_is_sent_once_after_the_failure_is_committed(tick, connect) -> None:
    """name, the exception itself, timed_out False, duration; the failure is
    already committed; value_stored is not sent."""
    stored = connect(signals.value_stored, Receiver())
    failed = connect(signals.run_failed, Receiver(read_row=True))

    with functions(
        {"function": "tests.functions.fail", "name": "calc", "args": ["kaput"]}
    ):
        assert tick().failed == ["calc"]

    (call,) = failed.calls
    assert call["sender"].name == "calc"
    assert call["name"] == "calc"
    assert isinstance(call["error"], ValueError)
    assert str(call["error"]) == "kaput"
    assert call["timed_out"] is False
    assert isinstance(call["duration"], float) and call["duration"] >= 0
    assert call["committed"]["status"] == Status.FAILED
    assert call["committed"]["lease_token"] is None
    assert stored.calls == []


def test_each_function_of_a_tick_gets_its_own_signal(tick, connect) -> None:
    """Three successes and a failure: three value_stored, one run_failed."""
    stored = connect(signals.value_stored, Receiver())
    failed = connect(signals.run_failed, Receiver())

    with functions(
        *(
            {"function": "tests.functions.constant", "name": n, "args": [n]}
            for n in ("a", "b", "c")
        ),
        {"function": "tests.functions.fail", "name": "d"},
    ):
        tick()

    assert sorted((c["name"], c["value"]) for c in stored.calls) == [
        ("a", "a"),
        ("b", "b"),
        ("c", "c"),
    ]
    assert [c["name"] for c in failed.calls] == ["d"]


def test_no_signal_for_a_result_that_was_discarded(tick, connect) -> None:
    """Another tick took the row over while the function ran: the result is
    dropped, so nothing was stored and no signal says otherwise."""
    stored = connect(signals.value_stored, Receiver())
    failed = connect(signals.run_failed, Receiver())

    def overtaken() -> str:
        FunctionState.objects.filter(name="overtaken").update(lease_token="x" * 32)
        return "late"

    with functions({"function": overtaken, "name": "overtaken"}):
        report = tick()

    assert report.discarded == ["overtaken"]
    assert stored.calls == failed.calls == []


def test_no_signal_when_nothing_is_due(tick, connect) -> None:
    """A tick that runs nothing sends nothing."""
    stored = connect(signals.value_stored, Receiver())
    with functions(
        {"function": "tests.functions.constant", "name": "hourly", "frequency": 3600}
    ):
        tick()
        tick(at=START + timedelta(seconds=60))

    assert len(stored.calls) == 1


# -- receivers that raise ----------------------------------------------------------


@pytest.mark.parametrize("threaded", [True, False], ids=["threads", "one"])
def test_a_raising_receiver_is_logged_and_does_not_disturb_the_tick(
    tick, connect, caplog, threaded: bool
) -> None:
    """Its error is logged on dumbwaiter.signals with the traceback; every
    function is still recorded, the report is right, and the receivers
    connected after it still get every signal."""
    connect(signals.value_stored, Receiver(raises=True))
    connect(signals.run_failed, Receiver(raises=True))
    stored_after = connect(signals.value_stored, Receiver())
    failed_after = connect(signals.run_failed, Receiver())

    with (
        functions(
            {"function": "tests.functions.constant", "name": "good"},
            {"function": "tests.functions.constant", "name": "also-good"},
            {"function": "tests.functions.fail", "name": "bad"},
        ),
        caplog.at_level(logging.DEBUG),
    ):
        report = tick(threaded=threaded)

        assert sorted(report.succeeded) == ["also-good", "good"]
        assert report.failed == ["bad"]
        assert dumbwaiter.get_value("good") == 42
        assert dumbwaiter.get_value("also-good") == 42

    assert sorted(c["name"] for c in stored_after.calls) == ["also-good", "good"]
    assert [c["name"] for c in failed_after.calls] == ["bad"]
    states = dict(FunctionState.objects.values_list("name", "status"))
    assert states == {
        "good": Status.SUCCEEDED,
        "also-good": Status.SUCCEEDED,
        "bad": Status.FAILED,
    }
    assert not FunctionState.objects.exclude(lease_token=None).exists()

    receiver_logs = [r for r in caplog.records if r.name == "dumbwaiter.signals"]
    assert len(receiver_logs) == 3
    for record in receiver_logs:
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
    assert sorted(str(r.exc_info[1]) for r in receiver_logs) == [
        "receiver broke on also-good",
        "receiver broke on bad",
        "receiver broke on good",
    ]


class BrokenReceiver:
    """A receiver that is a callable object rather than a function."""

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"callable receiver broke on {kwargs['name']}")


def test_a_raising_callable_object_receiver_does_not_disturb_the_tick(
    tick, caplog
) -> None:
    """Django accepts any callable as a receiver. One that raises must not
    disturb the tick either: every outcome is recorded, no claim is left
    behind, and the error is logged on dumbwaiter.signals."""
    broken = BrokenReceiver()
    signals.value_stored.connect(broken, weak=False)
    try:
        with (
            functions(
                {"function": "tests.functions.constant", "name": "first"},
                {"function": "tests.functions.constant", "name": "second"},
            ),
            caplog.at_level(logging.DEBUG),
        ):
            report = tick(threaded=False)
    finally:
        signals.value_stored.disconnect(broken)

    assert sorted(report.succeeded) == ["first", "second"]
    states = dict(FunctionState.objects.values_list("name", "status"))
    assert states == {"first": Status.SUCCEEDED, "second": Status.SUCCEEDED}
    assert not FunctionState.objects.exclude(lease_token=None).exists()
    logged = [r for r in caplog.records if r.name == "dumbwaiter.signals"]
    assert len(logged) == 2
    assert all(r.exc_info is not None for r in logged)


def test_a_raising_receiver_does_not_change_the_command_exit_code(
    tmp_path, connect
) -> None:
    """dumbwaiter_tick --once still succeeds when a receiver breaks."""
    connect(signals.value_stored, Receiver(raises=True))
    with override_settings(
        DUMBWAITER_FUNCTION_LIST=[
            {"function": "tests.functions.constant", "name": "fine"}
        ],
        DUMBWAITER_LOCK_DIR=str(tmp_path),
    ):
        call_command("dumbwaiter_tick", "--once", stderr=io.StringIO())
        assert dumbwaiter.get_value("fine") == 42


# -- a failure is logged once -------------------------------------------------------


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None]


def assert_logged_once_with_traceback(
    caplog: pytest.LogCaptureFixture, name: str, message: str
) -> None:
    (record,) = failure_records(caplog)
    assert record.name == "dumbwaiter.tick"
    assert record.levelno == logging.ERROR
    assert f"name={name}" in record.getMessage()
    assert isinstance(record.exc_info[1], ValueError)
    assert str(record.exc_info[1]) == message
    assert caplog.text.count("Traceback (most recent call last)") == 1
    assert 'tests/functions.py", line' in caplog.text
    assert f"ValueError: {message}" in caplog.text


@pytest.mark.parametrize("threaded", [True, False], ids=["threads", "one"])
def test_a_failure_is_logged_once_with_its_traceback(
    tick, caplog, threaded: bool
) -> None:
    """Exactly one log record carries the exception, whichever logger."""
    with (
        functions(
            {"function": "tests.functions.fail", "name": "calc", "args": ["kaput"]},
            {"function": "tests.functions.constant", "name": "fine"},
        ),
        caplog.at_level(logging.DEBUG),
    ):
        tick(threaded=threaded)

    assert_logged_once_with_traceback(caplog, "calc", "kaput")


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("dumbwaiter_tick", ["--once"]),
        ("dumbwaiter_tick", ["--once", "-v", "2"]),
        ("dumbwaiter_tick", ["--for", "0.5"]),
        ("dumbwaiter_run", ["calc"]),
    ],
    ids=["once", "once-v2", "loop", "run"],
)
def test_the_commands_log_a_failure_once(
    tmp_path, caplog, command: str, args: list[str]
) -> None:
    """The commands add no second record of the same failure."""
    entries = [
        {
            "function": "tests.functions.fail",
            "name": "calc",
            "args": ["kaput"],
            "frequency": 3600,
        }
    ]
    with (
        override_settings(
            DUMBWAITER_FUNCTION_LIST=entries, DUMBWAITER_LOCK_DIR=str(tmp_path)
        ),
        caplog.at_level(logging.DEBUG),
        pytest.raises(CommandError) as raised,
    ):
        call_command(command, *args, stdout=io.StringIO(), stderr=io.StringIO())

    assert raised.value.returncode == 1
    assert_logged_once_with_traceback(caplog, "calc", "kaput")


@pytest.mark.subprocess
def test_the_real_tick_prints_the_traceback_once(children) -> None:
    """On stderr, as cron would mail it: one traceback of the failure."""
    result = children.run(
        [{"function": "tests.functions.fail", "name": "calc", "args": ["kaput"]}],
        "--once",
    )

    assert result.returncode == 1
    assert result.stderr.count("Traceback (most recent call last)") == 1
    assert result.stderr.count("ValueError: kaput") == 1
    assert FunctionState.objects.get(name="calc").status == Status.FAILED
