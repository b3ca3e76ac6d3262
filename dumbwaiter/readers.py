"""The read path: what views call to show a value.

get_value is one indexed SELECT of one column, then deserialization. The
name check runs against the cached registry, so it costs no query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dumbwaiter import clock, specs
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.serializers import get_serializer

logger = logging.getLogger("dumbwaiter.read")


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


def _deserialize(name: str, payload: bytes) -> Any:
    return get_serializer().deserialize(payload)


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
    if max_age is None:
        payload = FunctionState.objects.newest_payload(name)
    else:
        if not isinstance(max_age, timedelta):
            max_age = timedelta(seconds=max_age)
        payload = FunctionState.objects.newest_payload(
            name, computed_since=clock.to_db(clock.now() - max_age)
        )
    if payload is None:
        return default
    return _deserialize(name, payload)


def get_result(name: str) -> Result:
    """The newest value with its time, status, last error and age."""
    specs.registry().get(name)
    state = FunctionState.objects.filter(name=name).first()
    if state is None:
        return Result(name, None, None, Status.NEVER_RUN, None, None)
    computed_at = clock.from_db(state.value_computed_at)
    value = None
    if state.value is not None:
        value = _deserialize(name, bytes(state.value))
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
    """Stored past values, newest first (at most the function's ``saved``)."""
    specs.registry().get(name)
    rows = HistoryEntry.objects.for_function(name).values_list(
        "value", "computed_at", "duration"
    )
    if limit is not None:
        rows = rows[:limit]
    return [
        PastValue(_deserialize(name, bytes(value)), clock.from_db(at), duration)
        for value, at, duration in rows
    ]


__all__ = ["LastError", "PastValue", "Result", "get_history", "get_result", "get_value"]
