"""Where values live, and the proof that a stored value is ours.

Every payload, whichever serializer made it, is sealed: an HMAC-SHA256 keyed
from ``SECRET_KEY`` and salted with the function's name goes in front of the
serialized bytes. A payload is deserialized only after its seal verifies for
the name it is read under, so a tampered row, or one copied from another
function, is never unpickled. ``SECRET_KEY_FALLBACKS`` are tried after
``SECRET_KEY``, so values survive a key rotation.

``DUMBWAITER_STORAGE`` picks the backend: ``"database"`` (the state row,
with history) or ``"cache:<alias>"`` (a Django cache; no history). Schedules,
claims and status stay in the database either way.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import router, transaction

from dumbwaiter import clock, conf
from dumbwaiter.exceptions import ConfigurationError
from dumbwaiter.models import FunctionState

logger = logging.getLogger("dumbwaiter.read")

MAGIC = b"dw1"
_TIME = struct.Struct("!d")
_MAC_SIZE = hashlib.sha256().digest_size


@functools.lru_cache(maxsize=4096)
def _key(secret: str | bytes, name: str) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode()
    return hashlib.sha256(
        b"dumbwaiter.payload|" + secret + b"|" + name.encode()
    ).digest()


def _mac(secret: str | bytes, name: str, body: bytes) -> bytes:
    return hmac.digest(_key(secret, name), body, "sha256")


def seal(name: str, body: bytes) -> bytes:
    """``body`` with a seal that ties it to this project and this function."""
    return MAGIC + _mac(settings.SECRET_KEY, name, body) + body


def unseal(name: str, payload: bytes) -> bytes | None:
    """The body of a payload sealed for ``name``; None if the seal is wrong."""
    header = len(MAGIC) + _MAC_SIZE
    if len(payload) < header or not payload.startswith(MAGIC):
        return None
    mac, body = payload[len(MAGIC) : header], payload[header:]
    if hmac.compare_digest(mac, _mac(settings.SECRET_KEY, name, body)):
        return body
    fallbacks: Sequence[str | bytes] = getattr(settings, "SECRET_KEY_FALLBACKS", ())
    for secret in fallbacks:
        if hmac.compare_digest(mac, _mac(secret, name, body)):
            return body
    return None


class DatabaseStorage:
    """The value lives in the function's state row; history is kept."""

    keeps_history = True

    def store(
        self,
        name: str,
        payload: bytes,
        computed_at: datetime,
        record: Callable[[dict[str, Any]], bool],
    ) -> bool:
        """Write the value through ``record`` (the conditional UPDATE)."""
        return record({"value": payload})

    def read(self, name: str, computed_since: datetime | None = None) -> bytes | None:
        return FunctionState.objects.newest_payload(
            name, computed_since=clock.to_db(computed_since)
        )

    def read_state(self, state: FunctionState) -> bytes | None:
        """The payload that goes with a state row already loaded."""
        return bytes(state.value) if state.value is not None else None


class CacheStorage:
    """The value lives in a Django cache under a per-function key; no history.

    A cache may evict the value (memory pressure, a restart of a cache that
    keeps nothing on disk); readers then get their default until the next run.
    """

    keeps_history = False

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @staticmethod
    def key(name: str) -> str:
        # A digest keeps any function name within memcached's key rules.
        return "dumbwaiter:value:" + hashlib.sha256(name.encode()).hexdigest()

    def store(
        self,
        name: str,
        payload: bytes,
        computed_at: datetime,
        record: Callable[[dict[str, Any]], bool],
    ) -> bool:
        """Record the outcome, then put the value in the cache.

        The cache is written only after the conditional UPDATE matched, while
        its row lock orders competing writers, so a run whose claim was taken
        over never reaches the cache. If the cache write fails, the savepoint
        undoes the UPDATE and the error propagates (the run counts as failed).
        """
        with transaction.atomic(using=router.db_for_write(FunctionState)):
            if not record({"value": None}):
                return False
            # The time rides in front of the payload as 8 bytes, so the cache
            # stores one bytes object, the cheapest thing for it to pickle.
            caches[self.alias].set(
                self.key(name), _TIME.pack(computed_at.timestamp()) + payload, None
            )
        return True

    def read(self, name: str, computed_since: datetime | None = None) -> bytes | None:
        try:
            entry = caches[self.alias].get(self.key(name))
        except Exception:
            # A cache outage must not break the page that shows the value.
            logger.exception(
                "unreadable name=%s reason=cache: %r could not be read; "
                "returning the default",
                name,
                self.alias,
            )
            return None
        return self._payload(entry, computed_since)

    def read_state(self, state: FunctionState) -> bytes | None:
        return self.read(state.name)

    @staticmethod
    def _payload(entry: Any, computed_since: datetime | None) -> bytes | None:
        if not isinstance(entry, bytes) or len(entry) < _TIME.size:
            return None
        if computed_since is not None:
            (timestamp,) = _TIME.unpack_from(entry)
            try:
                if datetime.fromtimestamp(timestamp, tz=UTC) < computed_since:
                    return None
            except (OverflowError, ValueError, OSError):
                return None  # not a time this module wrote
        return entry[_TIME.size :]


Storage = DatabaseStorage | CacheStorage


_DATABASE = DatabaseStorage()
_cache_storages: dict[str, CacheStorage] = {}


def get_storage() -> Storage:
    configured = conf.storage()
    if configured == "database":
        return _DATABASE
    if isinstance(configured, str) and configured.startswith("cache:"):
        alias = configured.removeprefix("cache:")
        storage = _cache_storages.get(alias)
        if storage is None:
            storage = _cache_storages[alias] = CacheStorage(alias)
        return storage
    raise ConfigurationError(
        f"DUMBWAITER_STORAGE must be 'database' or 'cache:<alias>', not "
        f"{configured!r}; run 'manage.py check' for details."
    )
