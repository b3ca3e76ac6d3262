"""Where values live and the seal that proves a stored value is ours.

Every payload is ``b"dw1"`` + an HMAC-SHA256 (keyed from SECRET_KEY, salted
with the function's name) + the serialized value; a payload whose seal does
not verify for the name it is read under is never deserialized. Values live
in the database (with history) or in a Django cache (``cache:<alias>``, no
history). The cache tests run on LocMemCache and on Django's RedisCache
against 127.0.0.1:6379 (db 7, a key prefix of their own); without a
reachable Redis those are skipped, or fail when DUMBWAITER_REQUIRE_REDIS=1.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import dumbwaiter
from dumbwaiter import clock
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.storage import (
    MAGIC,
    CacheStorage,
    DatabaseStorage,
    get_storage,
    seal,
    unseal,
)
from dumbwaiter.tick import Tick, TickReport
from tests import functions
from tests.conftest import runs_in

pytestmark = pytest.mark.django_db

HEADER = len(MAGIC) + 32  # b"dw1" + an HMAC-SHA256
NAMES = ("alpha", "beta")
SAVED = 3
DEFAULT = "the default"

REDIS_URL = "redis://127.0.0.1:6379/7"
# Nothing listens on port 1 of the loopback: every command is refused.
CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
REDIS = "django.core.cache.backends.redis.RedisCache"


def entry(name: str, value: Any = None) -> dict[str, Any]:
    return {
        "function": "tests.functions.constant",
        "name": name,
        "args": [value],
        "saved": SAVED,
    }


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    with override_settings(DUMBWAITER_FUNCTION_LIST=[entry(n) for n in NAMES]):
        yield


@pytest.fixture
def lock_dir(tmp_path: Path) -> str:
    return str(tmp_path / "locks")


def compute(
    name: str,
    value: Any,
    lock_dir: str,
    *,
    at: datetime | None = None,
    threaded: bool = False,
) -> TickReport:
    """Run one tick of ``name`` alone, returning ``value``; started ``at``."""
    entries = [entry(n, value) if n == name else entry(n) for n in NAMES]
    with override_settings(DUMBWAITER_FUNCTION_LIST=entries):
        tick = Tick(
            threaded=threaded,
            lock_dir=lock_dir,
            only=[name],
            force=True,
            now=clock.now if at is None else lambda: at,
        )
        return tick.run()


def read_errors(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """ERROR lines of dumbwaiter.read that name the function ``name``."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "dumbwaiter.read"
        and record.levelno == logging.ERROR
        and f"name={name} " in record.getMessage()
    ]


def flipped(payload: bytes, position: int) -> bytes:
    data = bytearray(payload)
    data[position] ^= 0x01
    return bytes(data)


# -- the storage backends -----------------------------------------------------


def redis_client_or_reason() -> tuple[Any, str]:
    try:
        import redis
    except ImportError as exc:
        return None, f"the redis package is not installed ({exc})"
    client = redis.Redis.from_url(
        REDIS_URL, socket_connect_timeout=2, socket_timeout=10
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        return None, f"Redis is not reachable at {REDIS_URL} ({exc})"
    return client, ""


def need_redis(reason: str) -> None:
    """Skip, or fail when CI says Redis must be there."""
    if os.environ.get("DUMBWAITER_REQUIRE_REDIS") == "1":
        pytest.fail(f"DUMBWAITER_REQUIRE_REDIS=1, but {reason}")
    pytest.skip(reason)


def need_redis_package() -> None:
    try:
        import redis  # noqa: F401
    except ImportError as exc:
        need_redis(f"the redis package is not installed ({exc})")


@dataclass
class Backend:
    """One way to configure DUMBWAITER_STORAGE, and access to what it holds."""

    kind: str  # "database", "locmem" or "redis"
    alias: str | None = None
    redis: Any = None
    prefix: str = ""

    @property
    def keeps_history(self) -> bool:
        return self.kind == "database"

    @property
    def cache(self) -> BaseCache:
        assert self.alias is not None
        return caches[self.alias]

    def payload(self, name: str) -> bytes | None:
        """The stored payload of ``name``, read past dumbwaiter's readers."""
        if self.alias is None:
            value = FunctionState.objects.get(name=name).value
            return None if value is None else bytes(value)
        cached = self.cache.get(CacheStorage.key(name))
        # An entry is 8 bytes of time, then the payload.
        return None if cached is None else cached[8:]

    def put(self, name: str, payload: bytes) -> None:
        """Replace the stored payload of ``name`` behind dumbwaiter's back."""
        if self.alias is None:
            FunctionState.objects.filter(name=name).update(value=payload)
            return
        stamp = self.cache.get(CacheStorage.key(name))[:8]
        self.cache.set(CacheStorage.key(name), stamp + payload, timeout=None)


def cache_settings(**aliases: dict[str, Any]) -> dict[str, Any]:
    return {"default": {"BACKEND": LOCMEM, "LOCATION": "default"}, **aliases}


def locmem(location: str) -> dict[str, Any]:
    return {"BACKEND": LOCMEM, "LOCATION": location}


@contextmanager
def redis_backend() -> Iterator[Backend]:
    client, reason = redis_client_or_reason()
    if client is None:
        need_redis(reason)
    prefix = f"dumbwaiter-test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    alias = {"BACKEND": REDIS, "LOCATION": REDIS_URL, "KEY_PREFIX": prefix}
    try:
        with override_settings(
            CACHES=cache_settings(values=alias), DUMBWAITER_STORAGE="cache:values"
        ):
            yield Backend("redis", "values", client, prefix)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@contextmanager
def locmem_backend() -> Iterator[Backend]:
    location = f"dumbwaiter-values-{uuid.uuid4().hex}"
    with override_settings(
        CACHES=cache_settings(values=locmem(location)),
        DUMBWAITER_STORAGE="cache:values",
    ):
        try:
            yield Backend("locmem", "values")
        finally:
            caches["values"].clear()


@pytest.fixture(params=["database", "locmem", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each storage backend in turn, on the database under test."""
    if request.param == "database":
        with override_settings(DUMBWAITER_STORAGE="database"):
            yield Backend("database")
    elif request.param == "locmem":
        with locmem_backend() as configured_backend:
            yield configured_backend
    else:
        with redis_backend() as configured_backend:
            yield configured_backend


@contextmanager
def cache_calls(cache: BaseCache) -> Iterator[list[str]]:
    """Record every call made on the cache object, by method name."""
    methods = (
        "get",
        "get_many",
        "has_key",
        "get_or_set",
        "add",
        "set",
        "set_many",
        "touch",
        "delete",
        "incr",
    )
    calls: list[str] = []

    def spy(method: str) -> Any:
        original = getattr(cache, method)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(method)
            return original(*args, **kwargs)

        return wrapper

    for method in methods:
        setattr(cache, method, spy(method))
    try:
        yield calls
    finally:
        for method in methods:
            delattr(cache, method)


# -- the seal -------------------------------------------------------------------


def test_a_stored_payload_is_the_seal_then_a_pickle_of_the_default_protocol(
    backend: Backend, lock_dir: str
) -> None:
    """b"dw1", 32 bytes of HMAC, then the pickle at pickle.DEFAULT_PROTOCOL,
    whichever backend holds it; the seal verifies for its own name only."""
    value = {"rows": [1, 2, 3], "label": "ünïcode"}
    assert compute("alpha", value, lock_dir).succeeded == ["alpha"]

    payload = backend.payload("alpha")

    assert payload is not None
    assert payload[:3] == b"dw1"
    body = payload[HEADER:]
    assert body[0] == pickle.PROTO[0]
    assert body[1] == pickle.DEFAULT_PROTOCOL
    assert pickle.loads(body) == value
    assert unseal("alpha", payload) == body
    assert unseal("beta", payload) is None
    assert dumbwaiter.get_value("alpha") == value


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_the_pickle_protocol_setting_is_honoured(lock_dir: str, protocol: int) -> None:
    """The pickle behind the seal is written at DUMBWAITER_PICKLE_PROTOCOL:
    from protocol 2 on it starts with PROTO and the protocol number; protocol
    0 has no PROTO opcode. Every protocol reads back."""
    value = ("tuple", 1.5, {"set": frozenset({1})})
    with override_settings(DUMBWAITER_PICKLE_PROTOCOL=protocol):
        assert compute("alpha", value, lock_dir).succeeded == ["alpha"]

    body = bytes(FunctionState.objects.get(name="alpha").value)[HEADER:]
    if protocol >= 2:
        assert body[:2] == pickle.PROTO + bytes([protocol])
    else:
        assert body[:1] != pickle.PROTO
    history_body = bytes(HistoryEntry.objects.get(name="alpha").value)[HEADER:]
    assert history_body == body
    assert dumbwaiter.get_value("alpha") == value


def test_a_seal_binds_the_body_to_one_name_and_one_secret_key() -> None:
    """The same body sealed for two names, or under two keys, carries two
    different MACs; unseal returns the body only for the matching pair and
    refuses short, unmarked and altered payloads."""
    body = pickle.dumps(["same", "body"])
    for_alpha = seal("alpha", body)
    for_beta = seal("beta", body)
    with override_settings(SECRET_KEY="another project's secret key"):
        other_key = seal("alpha", body)

    assert len({for_alpha[3:HEADER], for_beta[3:HEADER], other_key[3:HEADER]}) == 3
    assert for_alpha[HEADER:] == for_beta[HEADER:] == other_key[HEADER:] == body
    assert unseal("alpha", for_alpha) == body
    assert unseal("beta", for_alpha) is None
    assert unseal("alpha", for_beta) is None
    assert unseal("alpha", other_key) is None
    assert unseal("alpha", for_alpha[:HEADER]) is None  # body cut off
    assert unseal("alpha", for_alpha[: HEADER - 1]) is None
    assert unseal("alpha", b"") is None
    assert unseal("alpha", b"dw2" + for_alpha[3:]) is None
    assert unseal("alpha", for_alpha + b"\x00") is None


@pytest.mark.parametrize(
    "position",
    [0, 3, HEADER - 1, HEADER, -1],
    ids=["magic", "mac", "mac-end", "body", "last"],
)
def test_a_flipped_byte_gives_the_default_and_an_error_naming_the_function(
    backend: Backend, lock_dir: str, caplog: pytest.LogCaptureFixture, position: int
) -> None:
    """One changed bit anywhere in the stored value: get_value returns the
    default, get_result's value is None, nothing raises, and an ERROR on
    dumbwaiter.read names the function."""
    compute("alpha", {"n": 1}, lock_dir)
    compute("beta", {"n": 2}, lock_dir)
    backend.put("alpha", flipped(backend.payload("alpha"), position))

    with caplog.at_level(logging.ERROR, logger="dumbwaiter.read"):
        assert dumbwaiter.get_value("alpha", default=DEFAULT) == DEFAULT
        result = dumbwaiter.get_result("alpha")

    assert result.value is None
    assert result.status == Status.SUCCEEDED
    errors = read_errors(caplog, "alpha")
    assert len(errors) == 2
    assert all("reason=signature" in message for message in errors)
    assert read_errors(caplog, "beta") == []
    assert dumbwaiter.get_value("beta") == {"n": 2}


def test_a_value_copied_from_another_functions_row_is_refused(
    backend: Backend, lock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """beta holding alpha's exact bytes gives beta's default and an ERROR
    naming beta; alpha itself still reads."""
    compute("alpha", "alpha's secret figure", lock_dir)
    compute("beta", "beta's value", lock_dir)
    backend.put("beta", backend.payload("alpha"))

    with caplog.at_level(logging.ERROR, logger="dumbwaiter.read"):
        assert dumbwaiter.get_value("beta", default=DEFAULT) == DEFAULT

    assert len(read_errors(caplog, "beta")) == 1
    assert dumbwaiter.get_value("alpha") == "alpha's secret figure"


class RunsCode:
    """Pickles to a call of tests.functions.mark: unpickling appends a line."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (functions.mark, (self.marker,))


def forge(kind: str, body: bytes) -> bytes:
    if kind == "wrong-key":
        with override_settings(SECRET_KEY="the attacker's guess at the key"):
            return seal("alpha", body)
    if kind == "other-name":
        return seal("beta", body)
    if kind == "unsealed":
        return body
    assert kind == "magic-only"
    return MAGIC + bytes(32) + body


@pytest.mark.parametrize("kind", ["wrong-key", "other-name", "unsealed", "magic-only"])
def test_a_forged_payload_that_would_run_code_is_never_unpickled(
    backend: Backend,
    lock_dir: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    """A pickle that calls a function on load, sealed with the wrong key, for
    another name, or not at all: no reader ever runs it (the marker file is
    never written); each returns its default and logs an ERROR."""
    marker = tmp_path / "unpickled.runs"
    compute("alpha", "genuine", lock_dir)
    payload = forge(kind, pickle.dumps(RunsCode(str(marker))))
    backend.put("alpha", payload)
    if backend.keeps_history:
        HistoryEntry.objects.update(value=payload)

    with caplog.at_level(logging.ERROR, logger="dumbwaiter.read"):
        assert dumbwaiter.get_value("alpha", default=DEFAULT) == DEFAULT
        assert dumbwaiter.get_value("alpha", default=DEFAULT, max_age=3600) == DEFAULT
        assert dumbwaiter.get_result("alpha").value is None
        assert dumbwaiter.get_history("alpha") == []

    assert not marker.exists()
    assert len(read_errors(caplog, "alpha")) == (4 if backend.keeps_history else 3)


def test_the_forged_pickle_does_run_code_when_sealed_with_the_right_key(
    backend: Backend, lock_dir: str, tmp_path: Path
) -> None:
    """The control for the test above: the same pickle, sealed for alpha with
    SECRET_KEY, is deserialized (and so runs). Only the seal stands between a
    forged row and code execution."""
    marker = tmp_path / "unpickled.runs"
    compute("alpha", "genuine", lock_dir)
    backend.put("alpha", seal("alpha", pickle.dumps(RunsCode(str(marker)))))

    assert dumbwaiter.get_value("alpha") == "done"
    assert runs_in(marker) == 1


def test_a_tampered_history_row_is_left_out_and_logged(
    lock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """get_history skips a past value whose seal fails, keeps the rest, and
    logs an ERROR naming the function."""
    for value in (1, 2, 3):
        compute("alpha", value, lock_dir)
    middle = HistoryEntry.objects.for_function("alpha")[1]
    middle.value = flipped(bytes(middle.value), -1)
    middle.save()

    with caplog.at_level(logging.ERROR, logger="dumbwaiter.read"):
        history = dumbwaiter.get_history("alpha")

    assert [past.value for past in history] == [3, 1]
    assert len(read_errors(caplog, "alpha")) == 1


def test_values_stay_readable_across_a_key_rotation_with_fallbacks(
    backend: Backend, lock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Stored under key A, read under key B with A in SECRET_KEY_FALLBACKS;
    without the fallback the default and an ERROR. The next run seals with B."""
    old_key, new_key = "rotated-out-key-" + "a" * 40, "rotated-in-key-" + "b" * 40
    with override_settings(SECRET_KEY=old_key, SECRET_KEY_FALLBACKS=[]):
        compute("alpha", "sealed with A", lock_dir)

    with override_settings(SECRET_KEY=new_key, SECRET_KEY_FALLBACKS=[old_key]):
        assert dumbwaiter.get_value("alpha", default=DEFAULT) == "sealed with A"
        assert dumbwaiter.get_result("alpha").value == "sealed with A"
        if backend.keeps_history:
            assert [p.value for p in dumbwaiter.get_history("alpha")] == [
                "sealed with A"
            ]
    assert read_errors(caplog, "alpha") == []

    with (
        override_settings(SECRET_KEY=new_key, SECRET_KEY_FALLBACKS=[]),
        caplog.at_level(logging.ERROR, logger="dumbwaiter.read"),
    ):
        assert dumbwaiter.get_value("alpha", default=DEFAULT) == DEFAULT
        assert len(read_errors(caplog, "alpha")) == 1

        compute("alpha", "sealed with B", lock_dir)
        assert dumbwaiter.get_value("alpha", default=DEFAULT) == "sealed with B"
        assert unseal("alpha", backend.payload("alpha")) is not None
    with override_settings(SECRET_KEY=old_key, SECRET_KEY_FALLBACKS=[]):
        assert unseal("alpha", backend.payload("alpha")) is None


# -- storage backends ---------------------------------------------------------


def test_get_storage_follows_the_setting() -> None:
    """ "database" (and the default) give DatabaseStorage; "cache:x" a
    CacheStorage of alias x."""
    assert isinstance(get_storage(), DatabaseStorage)
    with override_settings(DUMBWAITER_STORAGE="database"):
        assert isinstance(get_storage(), DatabaseStorage)
    with override_settings(DUMBWAITER_STORAGE="cache:values"):
        storage = get_storage()
        assert isinstance(storage, CacheStorage)
        assert storage.alias == "values"


def test_values_live_where_the_storage_setting_says(
    backend: Backend, lock_dir: str
) -> None:
    """The database backend keeps the value in the state row and a history
    row; a cache backend keeps it in the cache only, while the schedule,
    claim and status still live in the state row."""
    report = compute("alpha", {"total": 1234}, lock_dir)

    assert report.succeeded == ["alpha"]
    state = FunctionState.objects.get(name="alpha")
    assert state.status == Status.SUCCEEDED
    assert state.version == 1
    assert state.lease_token is None and state.lease_expires is None
    assert state.next_due is not None and state.value_computed_at is not None
    assert dumbwaiter.get_value("alpha") == {"total": 1234}
    result = dumbwaiter.get_result("alpha")
    assert result.value == {"total": 1234}
    assert result.computed_at == clock.from_db(state.value_computed_at)

    if backend.keeps_history:
        assert state.value is not None
        assert HistoryEntry.objects.filter(name="alpha").count() == 1
        assert [p.value for p in dumbwaiter.get_history("alpha")] == [{"total": 1234}]
        return
    assert state.value is None
    assert not HistoryEntry.objects.exists()
    assert dumbwaiter.get_history("alpha") == []
    entry = backend.cache.get(CacheStorage.key("alpha"))
    (timestamp,) = struct.unpack("!d", entry[:8])
    payload = entry[8:]
    assert timestamp == clock.from_db(state.value_computed_at).timestamp()
    assert unseal("alpha", payload) is not None
    if backend.kind == "redis":
        keys = list(backend.redis.scan_iter(match=f"{backend.prefix}:*"))
        assert len(keys) == 1
        assert CacheStorage.key("alpha").encode() in keys[0]


def test_each_run_replaces_the_value_and_only_the_database_keeps_history(
    backend: Backend, lock_dir: str
) -> None:
    """Five runs with saved=3: the newest value everywhere; the database
    backend keeps the newest three past values, a cache backend none."""
    for value in range(1, 6):
        assert compute("alpha", value, lock_dir).succeeded == ["alpha"]
        assert dumbwaiter.get_value("alpha") == value

    history = [past.value for past in dumbwaiter.get_history("alpha")]
    if backend.keeps_history:
        assert history == [5, 4, 3]
    else:
        assert history == []
        assert not HistoryEntry.objects.exists()
    assert FunctionState.objects.get(name="alpha").version == 5


def test_one_threaded_tick_stores_several_values(backend: Backend, lock_dir: str):
    """Functions that finish together in one threaded tick all land in the
    configured storage."""
    entries = [entry("alpha", "a"), entry("beta", "b")]
    with override_settings(DUMBWAITER_FUNCTION_LIST=entries):
        report = Tick(threaded=True, lock_dir=lock_dir).run()

    assert sorted(report.succeeded) == ["alpha", "beta"]
    assert dumbwaiter.get_value("alpha") == "a"
    assert dumbwaiter.get_value("beta") == "b"


def test_get_value_is_one_query_or_one_cache_read(
    backend: Backend, lock_dir: str
) -> None:
    """With database storage get_value is exactly one query; with a cache it
    is exactly one cache get and no query at all, with or without max_age and
    with or without a stored value."""
    compute("alpha", list(range(100)), lock_dir)
    dumbwaiter.get_value("beta")  # the registry is built before counting

    reads: list[tuple[str, dict[str, Any], Any]] = [
        ("alpha", {}, list(range(100))),
        ("alpha", {"max_age": 3600}, list(range(100))),
        ("alpha", {"max_age": timedelta(hours=1)}, list(range(100))),
        ("beta", {}, DEFAULT),
        ("beta", {"max_age": 60}, DEFAULT),
    ]
    for name, kwargs, expected in reads:
        with CaptureQueriesContext(connection) as queries:
            if backend.alias is None:
                assert dumbwaiter.get_value(name, DEFAULT, **kwargs) == expected
            else:
                with cache_calls(backend.cache) as calls:
                    assert dumbwaiter.get_value(name, DEFAULT, **kwargs) == expected
                assert calls == ["get"], (name, kwargs)
        assert len(queries) == (1 if backend.alias is None else 0), (name, kwargs)


def test_max_age_gives_the_default_for_an_older_value(
    backend: Backend, lock_dir: str
) -> None:
    """A value computed an hour ago is returned for max_age of two hours
    (seconds or timedelta) and gives the default for max_age of a minute."""
    an_hour_ago = clock.now() - timedelta(hours=1)
    compute("alpha", "an hour old", lock_dir, at=an_hour_ago)

    assert dumbwaiter.get_value("alpha", DEFAULT) == "an hour old"
    assert dumbwaiter.get_value("alpha", DEFAULT, max_age=7200) == "an hour old"
    assert (
        dumbwaiter.get_value("alpha", DEFAULT, max_age=timedelta(hours=2))
        == "an hour old"
    )
    assert dumbwaiter.get_value("alpha", DEFAULT, max_age=60) == DEFAULT
    assert dumbwaiter.get_value("alpha", DEFAULT, max_age=timedelta(minutes=59)) == (
        DEFAULT
    )
    result = dumbwaiter.get_result("alpha")
    assert result.value == "an hour old"
    assert result.computed_at == an_hour_ago
    assert 3600 <= result.age < 3600 + 600


@pytest.mark.parametrize("kind", ["locmem", "redis"])
def test_an_evicted_value_gives_the_default(kind: str, lock_dir: str) -> None:
    """The cache lost the value: the default, and get_result still tells the
    status from the database with no value."""
    with locmem_backend() if kind == "locmem" else redis_backend() as backend:
        compute("alpha", "soon gone", lock_dir)
        backend.cache.delete(CacheStorage.key("alpha"))

        assert dumbwaiter.get_value("alpha", default=DEFAULT) == DEFAULT
        result = dumbwaiter.get_result("alpha")
        assert result.value is None
        assert result.status == Status.SUCCEEDED


@pytest.mark.parametrize(
    "entry_value",
    [b"raw bytes", ("not a timestamp", b"dw1"), (1.0, "text"), (1.0, b"x", 3), None],
    ids=["bytes", "text-timestamp", "text-payload", "three-items", "none"],
)
def test_a_cache_entry_of_another_shape_gives_the_default(
    lock_dir: str, entry_value: Any
) -> None:
    """Whatever else sits under the value's key (another writer, another
    version) gives the default, with or without max_age; never an exception."""
    with locmem_backend() as backend:
        compute("alpha", "genuine", lock_dir)
        backend.cache.set(CacheStorage.key("alpha"), entry_value, timeout=None)

        assert dumbwaiter.get_value("alpha", default=DEFAULT) == DEFAULT
        assert dumbwaiter.get_value("alpha", default=DEFAULT, max_age=60) == DEFAULT
        assert dumbwaiter.get_result("alpha").value is None


def test_history_stored_before_a_switch_to_cache_storage_is_not_returned(
    lock_dir: str,
) -> None:
    """The README: with a cache backend get_history returns []. Rows left by
    an earlier database-storage period are not served as its history."""
    compute("alpha", "from the database period", lock_dir)
    assert len(dumbwaiter.get_history("alpha")) == 1

    with locmem_backend():
        compute("alpha", "from the cache period", lock_dir)

        assert dumbwaiter.get_value("alpha") == "from the cache period"
        assert dumbwaiter.get_history("alpha") == []


@pytest.mark.django_db(transaction=True)
def test_a_cache_that_cannot_be_written_fails_the_run_and_keeps_the_value(
    lock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A RedisCache on a closed port raises on set: the tick does not crash;
    the run is recorded as failed with the cache's error, the claim is
    released, the value's time is unchanged and the previous value stays."""
    need_redis_package()
    location = f"dumbwaiter-values-{uuid.uuid4().hex}"
    working = cache_settings(values=locmem(location))
    broken = cache_settings(
        values={"BACKEND": REDIS, "LOCATION": CLOSED_REDIS_URL, "KEY_PREFIX": "x"}
    )
    try:
        with override_settings(CACHES=working, DUMBWAITER_STORAGE="cache:values"):
            assert compute("alpha", "previous", lock_dir).succeeded == ["alpha"]
        before = FunctionState.objects.get(name="alpha")

        with (
            override_settings(CACHES=broken, DUMBWAITER_STORAGE="cache:values"),
            caplog.at_level(logging.ERROR, logger="dumbwaiter.tick"),
        ):
            report = compute("alpha", "never stored", lock_dir)

        assert report.failed == ["alpha"]
        assert report.succeeded == report.discarded == []
        state = FunctionState.objects.get(name="alpha")
        assert state.status == Status.FAILED
        assert state.error_class == "redis.exceptions.ConnectionError"
        assert "127.0.0.1:1" in state.error_message
        assert state.lease_token is None and state.lease_expires is None
        assert state.value_computed_at == before.value_computed_at
        assert state.version == before.version + 1
        assert state.value is None
        assert not HistoryEntry.objects.exists()
        assert any(
            r.name == "dumbwaiter.tick" and "failed name=alpha" in r.getMessage()
            for r in caplog.records
        )

        with override_settings(CACHES=working, DUMBWAITER_STORAGE="cache:values"):
            assert dumbwaiter.get_value("alpha", default=DEFAULT) == "previous"
            assert dumbwaiter.get_result("alpha").status == Status.FAILED
            # The next run with the cache back stores again.
            assert compute("alpha", "stored", lock_dir).succeeded == ["alpha"]
            assert dumbwaiter.get_value("alpha") == "stored"
    finally:
        with override_settings(CACHES=working):
            caches["values"].clear()


def test_a_cache_that_cannot_be_read_gives_the_default_and_an_error(
    lock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The README: a value that cannot be read for any reason gives the
    default and an ERROR naming the function, never an exception in the view.
    A cache server that is down is such a reason."""
    need_redis_package()
    compute("alpha", "in the database state", lock_dir)
    broken = cache_settings(
        values={"BACKEND": REDIS, "LOCATION": CLOSED_REDIS_URL, "KEY_PREFIX": "x"}
    )
    with (
        override_settings(CACHES=broken, DUMBWAITER_STORAGE="cache:values"),
        caplog.at_level(logging.ERROR, logger="dumbwaiter.read"),
    ):
        assert dumbwaiter.get_value("alpha", default=DEFAULT) == DEFAULT

    assert len(read_errors(caplog, "alpha")) == 1


# -- check E026 -----------------------------------------------------------------


def storage_messages() -> list[Any]:
    return [m for m in run_checks() if m.id == "dumbwaiter.E026"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("memcache", "must be 'database' or 'cache:<alias>', not 'memcache'"),
        ("cache:", "must be 'database' or 'cache:<alias>', not 'cache:'"),
        ("Database", "not 'Database'"),
        ("", "not ''"),
        (None, "not None"),
        ("cache:nope", "names the cache 'nope', which is not in CACHES"),
    ],
)
def test_a_bad_storage_setting_is_check_e026(value: Any, text: str) -> None:
    """Anything but "database" or "cache:<alias of CACHES>" is one E026 error
    with a hint; a missing alias's hint lists the aliases there are."""
    with override_settings(
        DUMBWAITER_STORAGE=value,
        CACHES=cache_settings(values=locmem("e026")),
    ):
        messages = storage_messages()

    assert len(messages) == 1
    assert text in messages[0].msg
    assert messages[0].is_serious()
    if value == "cache:nope":
        assert "name one of: default, values." in messages[0].hint
    else:
        assert "'database'" in messages[0].hint


@pytest.mark.parametrize("value", ["database", "cache:default", "cache:values"])
def test_a_good_storage_setting_passes_the_checks(value: str) -> None:
    """ "database" and any alias of CACHES produce no E026."""
    with override_settings(
        DUMBWAITER_STORAGE=value, CACHES=cache_settings(values=locmem("e026"))
    ):
        assert storage_messages() == []


@override_settings(DUMBWAITER_STORAGE="cache:nope")
def test_the_tick_exits_2_on_a_bad_storage_setting() -> None:
    """dumbwaiter_tick refuses to run with E026 in its message; no row."""
    with pytest.raises(CommandError) as raised:
        call_command("dumbwaiter_tick", "--once")

    assert raised.value.returncode == 2
    assert "dumbwaiter.E026" in str(raised.value)
    assert not FunctionState.objects.exists()
