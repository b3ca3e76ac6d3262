"""aget_value, aget_result and aget_history: the readers for async code.

They must answer exactly as the sync readers do (defaults, max_age, unknown
names, unreadable values) on either storage backend. pytest's asyncio plugin
is not installed: coroutines run through asgiref's async_to_sync or through
asyncio.run, with real commits (``transaction=True``, as a
TransactionTestCase), since asyncio.run reads on a thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.cache import caches
from django.db import connection, connections
from django.test import AsyncClient, Client, override_settings
from django.test.utils import CaptureQueriesContext

import dumbwaiter
from dumbwaiter import clock
from dumbwaiter.exceptions import UnknownFunction
from dumbwaiter.models import FunctionState, Status
from dumbwaiter.storage import CacheStorage
from dumbwaiter.tick import Tick, TickReport
from tests.views import DEFAULT

pytestmark = pytest.mark.django_db(transaction=True)

NAMES = ("alpha", "beta")
T = TypeVar("T")


def entry(name: str, value: Any = None) -> dict[str, Any]:
    return {
        "function": "tests.functions.constant",
        "name": name,
        "args": [value],
        "saved": 3,
    }


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    with override_settings(DUMBWAITER_FUNCTION_LIST=[entry(n) for n in NAMES]):
        yield


@pytest.fixture
def lock_dir(tmp_path: Path) -> str:
    return str(tmp_path / "locks")


def compute(
    name: str, value: Any, lock_dir: str, *, at: datetime | None = None
) -> TickReport:
    """Run one tick of ``name`` alone, returning ``value``; started ``at``."""
    entries = [entry(n, value) if n == name else entry(n) for n in NAMES]
    with override_settings(DUMBWAITER_FUNCTION_LIST=entries):
        return Tick(
            threaded=False,
            lock_dir=lock_dir,
            only=[name],
            force=True,
            now=clock.now if at is None else lambda: at,
        ).run()


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Await ``make()`` from this sync test, as an ASGI server would."""

    async def awaited() -> T:
        return await make()

    return async_to_sync(awaited)()


# Reads each test repeats in sync and in async: (name, args, kwargs).
READS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("alpha", (), {}),
    ("alpha", (DEFAULT,), {}),
    ("alpha", (), {"default": DEFAULT, "max_age": 7200}),
    ("alpha", (), {"default": DEFAULT, "max_age": timedelta(hours=2)}),
    ("alpha", (), {"default": DEFAULT, "max_age": 60}),
    ("alpha", (DEFAULT, timedelta(minutes=59)), {}),
    ("beta", (), {}),
    ("beta", (), {"default": DEFAULT}),
    ("beta", (), {"default": [], "max_age": 60}),
]


def test_aget_value_answers_as_get_value(storage: str, lock_dir: str) -> None:
    """Same value, same default for a value never computed, same max_age
    cut-off (seconds and timedelta) as the sync reader."""
    compute("alpha", {"hour": "old"}, lock_dir, at=clock.now() - timedelta(hours=1))

    sync = [dumbwaiter.get_value(n, *args, **kwargs) for n, args, kwargs in READS]

    async def read_all() -> list[Any]:
        return [
            await dumbwaiter.aget_value(n, *args, **kwargs) for n, args, kwargs in READS
        ]

    assert run(read_all) == sync
    assert sync == [
        {"hour": "old"},
        {"hour": "old"},
        {"hour": "old"},
        {"hour": "old"},
        DEFAULT,
        DEFAULT,
        None,
        DEFAULT,
        [],
    ]


def test_aget_value_is_one_query_or_no_query(storage: str, lock_dir: str) -> None:
    """Awaited from an async context, aget_value still makes exactly one
    query with database storage, and none with a cache."""
    compute("alpha", "value", lock_dir)
    dumbwaiter.get_value("beta")  # the registry is built before counting
    expected = 1 if storage == "database" else 0

    for name, answer in (("alpha", "value"), ("beta", DEFAULT)):
        with CaptureQueriesContext(connection) as queries:
            assert run(lambda n=name: dumbwaiter.aget_value(n, DEFAULT)) == answer
        assert len(queries) == expected, [q["sql"] for q in queries]


def test_aget_result_answers_as_get_result(storage: str, lock_dir: str) -> None:
    """Value, computed_at, status and error as get_result gives them; the age
    measured at its own moment of reading."""
    compute("alpha", [1, 2], lock_dir, at=clock.now() - timedelta(minutes=5))
    compute("beta", None, lock_dir)
    FunctionState.objects.filter(name="beta").update(
        status=Status.FAILED, error_class="ValueError", error_message="boom"
    )

    for name in NAMES:
        sync = dumbwaiter.get_result(name)
        awaited = run(lambda n=name: dumbwaiter.aget_result(n))

        assert replace(awaited, age=None) == replace(sync, age=None)
        assert sync.age is not None and awaited.age is not None
        assert sync.age <= awaited.age < sync.age + 60

    assert run(lambda: dumbwaiter.aget_result("alpha")).value == [1, 2]
    failed = run(lambda: dumbwaiter.aget_result("beta"))
    assert failed.status == Status.FAILED
    assert failed.error is not None and failed.error.message == "boom"


def test_aget_result_of_a_function_never_run(storage: str) -> None:
    """Status never, nothing else: the same Result as get_result."""
    awaited = run(lambda: dumbwaiter.aget_result("alpha"))

    assert awaited == dumbwaiter.get_result("alpha")
    assert awaited.status == Status.NEVER_RUN
    assert (awaited.value, awaited.computed_at, awaited.age) == (None, None, None)


def test_aget_history_answers_as_get_history(storage: str, lock_dir: str) -> None:
    """Newest first with the same limit handling; empty with a cache."""
    for value in (1, 2, 3, 4):
        compute("alpha", value, lock_dir)

    for limit in (None, 2, 10):
        sync = dumbwaiter.get_history("alpha", limit)
        assert run(lambda n=limit: dumbwaiter.aget_history("alpha", n)) == sync
        assert run(lambda n=limit: dumbwaiter.aget_history("alpha", limit=n)) == sync

    values = [p.value for p in run(lambda: dumbwaiter.aget_history("alpha"))]
    assert values == ([4, 3, 2] if storage == "database" else [])
    assert run(lambda: dumbwaiter.aget_history("beta")) == []


@pytest.mark.parametrize("reader", ["aget_value", "aget_result", "aget_history"])
def test_an_unknown_name_raises_unknown_function_in_async_code(reader: str) -> None:
    """The same UnknownFunction as the sync readers, raised into the caller."""
    with pytest.raises(UnknownFunction, match="known functions: 'alpha', 'beta'"):
        run(lambda: getattr(dumbwaiter, reader)("gamma"))


def test_an_unreadable_value_gives_the_default_in_async_code(
    storage: str, lock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A tampered value: the default from aget_value, None from aget_result,
    an ERROR naming the function; nothing raises into the coroutine."""
    compute("alpha", "genuine", lock_dir)
    if storage == "database":
        FunctionState.objects.filter(name="alpha").update(value=b"dw1" + bytes(40))
    else:
        stamp = caches["values"].get(CacheStorage.key("alpha"))[:8]
        caches["values"].set(CacheStorage.key("alpha"), stamp + b"dw1" + bytes(40))

    with caplog.at_level(logging.ERROR, logger="dumbwaiter.read"):
        assert run(lambda: dumbwaiter.aget_value("alpha", DEFAULT)) == DEFAULT
        assert run(lambda: dumbwaiter.aget_result("alpha")).value is None

    errors = [
        r
        for r in caplog.records
        if r.name == "dumbwaiter.read" and "name=alpha " in r.getMessage()
    ]
    assert len(errors) == 2
    assert all(r.levelno == logging.ERROR for r in errors)


def test_readers_run_concurrently_under_asyncio_run(
    storage: str, lock_dir: str
) -> None:
    """Twenty readers gathered in a fresh event loop (no ASGI server around
    it) all get the right answers."""
    compute("alpha", {"a": 1}, lock_dir)

    async def many() -> list[Any]:
        try:
            return await asyncio.gather(
                *(dumbwaiter.aget_value("alpha") for _ in range(10)),
                *(dumbwaiter.aget_value("beta", DEFAULT) for _ in range(5)),
                *(dumbwaiter.aget_value("alpha", max_age=3600) for _ in range(5)),
            )
        finally:
            # These reads ran on asgiref's executor thread; close its
            # connection so the test database can be dropped.
            await sync_to_async(connections.close_all)()

    answers = asyncio.run(many())

    assert answers == [{"a": 1}] * 10 + [DEFAULT] * 5 + [{"a": 1}] * 5


def test_an_async_view_reads_values_through_the_async_readers(
    storage: str, lock_dir: str
) -> None:
    """GET the async view with AsyncClient: 200 with the value, the result's
    value and status, and the history; the default before any run. The sync
    view shows the same value."""
    client = AsyncClient()

    before = run(lambda: client.get("/values/async/alpha/"))
    assert before.status_code == 200
    assert before.json() == {
        "value": DEFAULT,
        "result": None,
        "status": "never",
        "history": [],
    }

    compute("alpha", "first", lock_dir)
    compute("alpha", {"second": 2}, lock_dir)

    after = run(lambda: client.get("/values/async/alpha/"))
    assert after.status_code == 200
    assert after.json() == {
        "value": {"second": 2},
        "result": {"second": 2},
        "status": "ok",
        "history": [{"second": 2}, "first"] if storage == "database" else [],
    }
    assert Client().get("/values/sync/alpha/").json() == {"value": {"second": 2}}
    old = run(lambda: client.get("/values/async/alpha/", {"max_age": "0.000001"}))
    assert old.json()["value"] == DEFAULT


def test_an_async_view_answers_200_with_the_default_for_an_unreadable_value(
    storage: str, lock_dir: str
) -> None:
    """A value stored as a pickle and read with the JSON serializer: the async
    view still answers 200, with the default."""
    compute("alpha", {"stored": "as a pickle"}, lock_dir)
    client = AsyncClient()

    with override_settings(DUMBWAITER_SERIALIZER="dumbwaiter.serializers.json"):
        response = run(lambda: client.get("/values/async/alpha/"))

    assert response.status_code == 200
    assert response.json()["value"] == DEFAULT
    assert response.json()["result"] is None
    assert response.json()["history"] == []
