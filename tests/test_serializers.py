"""The serializers, and what a stored value that cannot be read back gives.

``dumbwaiter.serializers.pickler`` (the default) round-trips any picklable
value; ``dumbwaiter.serializers.json`` goes through Django's JSON encoder and
returns tuples as lists and datetimes, dates, times, decimals and UUIDs as
strings. A stored value that can no longer be deserialized, for whatever
reason, gives the reader's default and an ERROR on ``dumbwaiter.read``
naming the function: never raw bytes, never an exception in a view.
"""

from __future__ import annotations

import json
import logging
import pickle
import sys
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.test import Client, override_settings

import dumbwaiter
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.serializers import get_serializer, pickler
from dumbwaiter.serializers import json as json_serializer
from dumbwaiter.storage import MAGIC, CacheStorage, seal, unseal
from dumbwaiter.tick import Tick, TickReport
from tests.views import DEFAULT

pytestmark = pytest.mark.django_db

HEADER = len(MAGIC) + 32
NAMES = ("alpha", "beta")
JSON = "dumbwaiter.serializers.json"


def entry(name: str, value: Any = None) -> dict[str, Any]:
    return {"function": "tests.functions.constant", "name": name, "args": [value]}


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    with override_settings(DUMBWAITER_FUNCTION_LIST=[entry(n) for n in NAMES]):
        yield


@pytest.fixture
def lock_dir(tmp_path: Path) -> str:
    return str(tmp_path / "locks")


def compute(name: str, value: Any, lock_dir: str) -> TickReport:
    """Run one tick of ``name`` alone, returning ``value``."""
    entries = [entry(n, value) if n == name else entry(n) for n in NAMES]
    with override_settings(DUMBWAITER_FUNCTION_LIST=entries):
        return Tick(threaded=False, lock_dir=lock_dir, only=[name], force=True).run()


def stored_payload(name: str) -> bytes:
    """The payload as stored, wherever the storage setting keeps it."""
    state = FunctionState.objects.get(name=name)
    if state.value is not None:
        return bytes(state.value)
    payload = caches["values"].get(CacheStorage.key(name))[8:]  # after the time
    return payload


def replace_payload(name: str, payload: bytes) -> None:
    """Put ``payload`` where the value of ``name`` is stored (and in history)."""
    state = FunctionState.objects.get(name=name)
    if state.value is not None:
        FunctionState.objects.filter(name=name).update(value=payload)
        HistoryEntry.objects.filter(name=name).update(value=payload)
        return
    stamp = caches["values"].get(CacheStorage.key(name))[:8]
    caches["values"].set(CacheStorage.key(name), stamp + payload, timeout=None)


def read_errors(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "dumbwaiter.read"
        and record.levelno == logging.ERROR
        and f"name={name} " in record.getMessage()
    ]


@dataclass(frozen=True)
class Point:
    x: int
    y: int


# -- pickle ---------------------------------------------------------------------


PICKLABLE = {
    "tuple": (1, "two", (3.0,)),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a"}),
    "aware-datetime": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    "naive-datetime": datetime(2026, 1, 2, 3, 4, 5, 678901),
    "date": date(2026, 1, 2),
    "time": time(3, 4, 5, 678901),
    "timedelta": timedelta(days=1, seconds=2),
    "decimal": Decimal("1.10"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "bytes": b"\x00\xff raw",
    "int-keys": {1: "one", (2, 3): "pair"},
    "dataclass": Point(1, 2),
    "big-int": 2**100,
    "complex": 1 + 2j,
}


@pytest.mark.parametrize("value", PICKLABLE.values(), ids=PICKLABLE.keys())
def test_the_pickler_round_trips_any_picklable_value_with_its_type(
    storage: str, lock_dir: str, value: Any
) -> None:
    """The default serializer: what the function returned, equal and of the
    same type, through a real tick and get_value, on either storage."""
    assert get_serializer() is pickler.serializer
    assert compute("alpha", value, lock_dir).succeeded == ["alpha"]

    read = dumbwaiter.get_value("alpha")

    assert read == value
    assert type(read) is type(value)
    if isinstance(value, datetime):
        assert read.tzinfo == value.tzinfo


def test_the_pickler_writes_bytes_at_the_configured_protocol() -> None:
    """serialize gives bytes of DUMBWAITER_PICKLE_PROTOCOL; deserialize reads
    them back."""
    serializer = pickler.serializer
    for protocol in (2, 3, 4, 5):
        with override_settings(DUMBWAITER_PICKLE_PROTOCOL=protocol):
            data = serializer.serialize(PICKLABLE["tuple"])
        assert isinstance(data, bytes)
        assert data[:2] == pickle.PROTO + bytes([protocol])
        assert serializer.deserialize(data) == PICKLABLE["tuple"]


def test_a_value_pickle_refuses_fails_the_run_and_keeps_the_previous_value(
    storage: str, lock_dir: str
) -> None:
    """A lambda cannot be pickled: the run fails in the worker, the error is
    recorded, and readers keep getting the previous value."""
    compute("alpha", "previous", lock_dir)

    report = compute("alpha", lambda: None, lock_dir)

    assert report.failed == ["alpha"]
    state = FunctionState.objects.get(name="alpha")
    assert state.status == Status.FAILED
    assert state.error_class != ""
    assert dumbwaiter.get_value("alpha") == "previous"


# -- JSON -----------------------------------------------------------------------


JSON_NATIVE = {
    "dict": {"a": 1, "nested": {"b": [1, 2, {"c": None}]}},
    "list": [1, "two", 3.5, True, None],
    "str": 'ünïcødé ✓ "quoted" \\ back',
    "empty-str": "",
    "int": -(2**62),
    "zero": 0,
    "float": 0.1,
    "true": True,
    "false": False,
    "none": None,
    "empty-dict": {},
}


@pytest.mark.parametrize("value", JSON_NATIVE.values(), ids=JSON_NATIVE.keys())
def test_json_round_trips_json_values_exactly(
    storage: str, lock_dir: str, value: Any
) -> None:
    """dicts, lists, str, int, float, bool and None come back equal and of the
    same type; behind the seal the payload is JSON text."""
    with override_settings(DUMBWAITER_SERIALIZER=JSON):
        assert get_serializer() is json_serializer.serializer
        assert compute("alpha", value, lock_dir).succeeded == ["alpha"]

        body = unseal("alpha", stored_payload("alpha"))
        read = dumbwaiter.get_value("alpha", default=DEFAULT)

    assert body is not None
    assert json.loads(body.decode("utf-8")) == value
    assert read == value
    assert type(read) is type(value)


# What JSON cannot carry, and what it comes back as (the README's list).
JSON_LOSSY = {
    "tuple": ((1, (2, 3)), [1, [2, 3]]),
    "aware-datetime": (
        datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "2026-01-02T03:04:05.678Z",
    ),
    "naive-datetime": (
        datetime(2026, 1, 2, 3, 4, 5, 678901),
        "2026-01-02T03:04:05.678",
    ),
    "date": (date(2026, 1, 2), "2026-01-02"),
    "time": (time(3, 4, 5, 678901), "03:04:05.678"),
    "decimal": (Decimal("1.10"), "1.10"),
    "uuid": (
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "12345678-1234-5678-1234-567812345678",
    ),
    "in-a-dict": (
        {"at": date(2026, 1, 2), "amount": Decimal("-3.5"), "pair": ("a", "b")},
        {"at": "2026-01-02", "amount": "-3.5", "pair": ["a", "b"]},
    ),
}


@pytest.mark.parametrize(
    ("value", "expected"), JSON_LOSSY.values(), ids=JSON_LOSSY.keys()
)
def test_json_returns_tuples_as_lists_and_datetimes_decimals_uuids_as_strings(
    storage: str, lock_dir: str, value: Any, expected: Any
) -> None:
    """What does not round-trip through JSON comes back in the documented
    form: tuples as lists, datetimes, dates, times, decimals and UUIDs as
    the strings Django's encoder writes."""
    with override_settings(DUMBWAITER_SERIALIZER=JSON):
        assert compute("alpha", value, lock_dir).succeeded == ["alpha"]
        read = dumbwaiter.get_value("alpha")

    assert read == expected
    assert type(read) is type(expected)


@pytest.mark.parametrize(
    "value", [{1, 2}, Point(1, 2), b"bytes"], ids=["set", "object", "bytes"]
)
def test_a_value_json_cannot_encode_fails_the_run_and_keeps_the_previous_value(
    storage: str, lock_dir: str, value: Any
) -> None:
    """The run fails with the encoder's TypeError; readers keep the previous
    value."""
    with override_settings(DUMBWAITER_SERIALIZER=JSON):
        compute("alpha", {"previous": True}, lock_dir)
        report = compute("alpha", value, lock_dir)

        assert report.failed == ["alpha"]
        state = FunctionState.objects.get(name="alpha")
        assert state.status == Status.FAILED
        assert state.error_class == "TypeError"
        assert dumbwaiter.get_value("alpha") == {"previous": True}


# -- values that cannot be read back ---------------------------------------------


@pytest.fixture
def vanishing() -> Iterator[types.ModuleType]:
    """A module with a class in it, registered only for this test."""
    module = types.ModuleType("tests._vanishing_values")

    class Report:
        def __init__(self, total: int) -> None:
            self.total = total

    Report.__module__ = module.__name__
    Report.__qualname__ = "Report"
    module.Report = Report  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        yield module
    finally:
        sys.modules.pop(module.__name__, None)


def store_vanishing(vanishing: types.ModuleType, lock_dir: str, how: str) -> None:
    """Store a Report, then remove its class or its whole module."""
    assert compute("alpha", vanishing.Report(7), lock_dir).succeeded == ["alpha"]
    assert dumbwaiter.get_value("alpha").total == 7
    if how == "class-removed":
        del vanishing.Report
    else:
        del sys.modules[vanishing.__name__]


def garbage_after_seal(lock_dir: str) -> None:
    """A valid seal over bytes that are no pickle and no JSON."""
    compute("alpha", "fine", lock_dir)
    replace_payload("alpha", seal("alpha", b"\x80\x05garbage{not json"))


UNREADABLE = ["class-removed", "module-removed", "garbage", "pickle-then-json"]


def make_unreadable(
    how: str, vanishing: types.ModuleType, lock_dir: str
) -> dict[str, Any]:
    """Store alpha so it cannot be read back; the settings to read it with."""
    if how in {"class-removed", "module-removed"}:
        store_vanishing(vanishing, lock_dir, how)
        return {}
    if how == "garbage":
        garbage_after_seal(lock_dir)
        return {}
    assert how == "pickle-then-json"
    compute("alpha", {"stored": "as a pickle"}, lock_dir)
    return {"DUMBWAITER_SERIALIZER": JSON}


@pytest.mark.parametrize("how", UNREADABLE)
def test_a_value_that_cannot_be_deserialized_gives_the_default_and_an_error(
    storage: str,
    lock_dir: str,
    vanishing: types.ModuleType,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    """Its class or module is gone, the bytes after a valid seal are garbage,
    or the serializer was switched from pickle to JSON: get_value gives the
    default, get_result a None value with the status, get_history leaves it
    out, and each logs an ERROR naming the function; nothing raises."""
    reading = make_unreadable(how, vanishing, lock_dir)

    with (
        override_settings(**reading),
        caplog.at_level(logging.ERROR, logger="dumbwaiter.read"),
    ):
        assert dumbwaiter.get_value("alpha", default=DEFAULT) == DEFAULT
        assert dumbwaiter.get_value("alpha", DEFAULT, max_age=3600) == DEFAULT
        result = dumbwaiter.get_result("alpha")
        history = dumbwaiter.get_history("alpha")

    assert result.value is None
    assert result.status == Status.SUCCEEDED
    assert result.computed_at is not None
    assert history == []
    errors = read_errors(caplog, "alpha")
    reads = 4 if storage == "database" else 3  # no history in a cache
    assert len(errors) == reads
    assert all("reason=deserialize" in message for message in errors)
    assert all(
        r.exc_info is not None
        for r in caplog.records
        if r.name == "dumbwaiter.read" and r.levelno == logging.ERROR
    )


def test_a_value_switched_from_json_to_pickle_gives_the_default(
    storage: str, lock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """JSON text is no pickle: back on the pickler, the default and an ERROR."""
    with override_settings(DUMBWAITER_SERIALIZER=JSON):
        compute("alpha", {"stored": "as JSON"}, lock_dir)
        assert dumbwaiter.get_value("alpha") == {"stored": "as JSON"}

    with caplog.at_level(logging.ERROR, logger="dumbwaiter.read"):
        assert dumbwaiter.get_value("alpha", default=DEFAULT) == DEFAULT

    assert len(read_errors(caplog, "alpha")) == 1


def test_only_the_unreadable_value_is_affected(
    lock_dir: str, vanishing: types.ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    """Another function's value, and the same function's older readable
    history, still read; the next successful run makes it readable again."""
    compute("alpha", "older", lock_dir)
    compute("beta", "beta's", lock_dir)
    store_vanishing(vanishing, lock_dir, "module-removed")

    with caplog.at_level(logging.ERROR, logger="dumbwaiter.read"):
        assert dumbwaiter.get_value("alpha", default=DEFAULT) == DEFAULT
        assert [p.value for p in dumbwaiter.get_history("alpha")] == ["older"]
    assert dumbwaiter.get_value("beta") == "beta's"
    assert read_errors(caplog, "beta") == []

    compute("alpha", "newer", lock_dir)
    assert dumbwaiter.get_value("alpha", default=DEFAULT) == "newer"


@pytest.mark.parametrize("how", UNREADABLE)
def test_a_view_reading_an_unreadable_value_answers_200_with_the_default(
    storage: str,
    lock_dir: str,
    vanishing: types.ModuleType,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    """GET a real view that calls get_value: status 200 and the default, not
    a server error, and the ERROR line names the function."""
    reading = make_unreadable(how, vanishing, lock_dir)
    client = Client(raise_request_exception=True)

    with (
        override_settings(**reading),
        caplog.at_level(logging.ERROR, logger="dumbwaiter.read"),
    ):
        response = client.get("/values/sync/alpha/")

    assert response.status_code == 200
    assert response.json() == {"value": DEFAULT}
    assert len(read_errors(caplog, "alpha")) == 1


def test_the_view_shows_a_readable_value(storage: str, lock_dir: str) -> None:
    """The control for the view tests: a readable value is what it shows."""
    client = Client(raise_request_exception=True)
    assert client.get("/values/sync/alpha/").json() == {"value": DEFAULT}

    compute("alpha", {"total": 12}, lock_dir)

    response = client.get("/values/sync/alpha/")
    assert response.status_code == 200
    assert response.json() == {"value": {"total": 12}}
    assert client.get("/values/sync/alpha/?max_age=0.000001").json() == {
        "value": DEFAULT
    }
