"""The read path: what views call to show a value.

get_value is one indexed SELECT of one column (or one cache read), a seal
check, then deserialization. The name check runs against the cached
registry, so it costs no query. A value that cannot be read for any reason
gives the caller's default and an ERROR log line, never raw bytes and never
an exception in the view.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async

from dumbwaiter import clock, specs
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.serializers import get_serializer
from dumbwaiter.storage import get_storage, unseal

logger = logging.getLogger("dumbwaiter.read")

_UNREADABLE = object()


@dataclass(frozen=True)
class LastError:
    """The newest failure of a function, kept after later successes."""

    exception_class: str
    message: str
    traceback: str
    at: datetime | None


@dataclass(frozen=True)
class Result:
    """The newest value of a function and how it came about."""

    name: str
    value: Any
    computed_at: datetime | None
    status: Status
    error: LastError | None
    # Seconds between computed_at and the moment of reading; None if never
    # computed.
    age: float | None


@dataclass(frozen=True)
class PastValue:
    value: Any
    computed_at: datetime
    duration: float | None


def _open(name: str, payload: bytes) -> Any:
    """The value in a stored payload, or ``_UNREADABLE`` (logged)."""
    body = unseal(name, payload)
    if body is None:
        logger.error(
            "unreadable name=%s reason=signature: the stored value was not "
            "written for this function with this SECRET_KEY (or its fallbacks); "
            "returning the default",
            name,
        )
        return _UNREADABLE
    try:
        return get_serializer().deserialize(body)
    except Exception:
        logger.exception(
            "unreadable name=%s reason=deserialize: returning the default", name
        )
        return _UNREADABLE


def get_value(
    name: str, default: Any = None, max_age: float | timedelta | None = None
) -> Any:
    """The newest value of the function called ``name``, or ``default``.

    With ``max_age`` (seconds or a timedelta), a value computed longer ago
    than that also gives ``default``. Raises
    :class:`~dumbwaiter.exceptions.UnknownFunction` for a name that is not in
    ``DUMBWAITER_FUNCTION_LIST``.
    """
    specs.registry().get(name)
    since = None
    if max_age is not None:
        if not isinstance(max_age, timedelta):
            max_age = timedelta(seconds=max_age)
        since = clock.now() - max_age
    payload = get_storage().read(name, since)
    if payload is None:
        return default
    value = _open(name, payload)
    return default if value is _UNREADABLE else value


def get_result(name: str) -> Result:
    """The newest value with its time, status, last error and age.

    ``value`` is None when there is none, or when it cannot be read.
    """
    specs.registry().get(name)
    state = FunctionState.objects.filter(name=name).first()
    if state is None:
        return Result(name, None, None, Status.NEVER_RUN, None, None)
    computed_at = clock.from_db(state.value_computed_at)
    payload = get_storage().read_state(state)
    value = None if payload is None else _open(name, payload)
    if value is _UNREADABLE:
        value = None
    if payload is None:
        # Nothing to show (never computed, or evicted from a cache store):
        # the time of a value nobody can read would only mislead.
        computed_at = None
    error = None
    if state.error_class:
        error = LastError(
            exception_class=state.error_class,
            message=state.error_message,
            traceback=state.error_traceback,
            at=clock.from_db(state.error_at),
        )
    age = None
    if computed_at is not None:
        age = (clock.now() - computed_at).total_seconds()
    return Result(name, value, computed_at, Status(state.status), error, age)


def get_history(name: str, limit: int | None = None) -> list[PastValue]:
    """Stored past values, newest first (at most the function's ``saved``).

    Empty with a cache storage backend, which keeps no history. Entries that
    cannot be read are left out (and logged).
    """
    saved = specs.registry().get(name).saved
    if not get_storage().keeps_history:
        # Rows left from before a switch to cache storage are not trimmed
        # any more and would only grow stale.
        return []
    # Rows beyond ``saved`` can exist until the next run trims them (after
    # ``saved`` was lowered); they are not part of the history any more.
    limit = saved if limit is None else min(limit, saved)
    rows = HistoryEntry.objects.for_function(name).values_list(
        "value", "computed_at", "duration"
    )[:limit]
    history = []
    for payload, at, duration in rows:
        value = _open(name, bytes(payload))
        if value is not _UNREADABLE:
            history.append(PastValue(value, clock.from_db(at), duration))
    return history


async def aget_value(
    name: str, default: Any = None, max_age: float | timedelta | None = None
) -> Any:
    """:func:`get_value` for async views."""
    return await sync_to_async(get_value)(name, default, max_age)


async def aget_result(name: str) -> Result:
    """:func:`get_result` for async views."""
    return await sync_to_async(get_result)(name)


async def aget_history(name: str, limit: int | None = None) -> list[PastValue]:
    """:func:`get_history` for async views."""
    return await sync_to_async(get_history)(name, limit)


__all__ = [
    "LastError",
    "PastValue",
    "Result",
    "aget_history",
    "aget_result",
    "aget_value",
    "get_history",
    "get_result",
    "get_value",
]
