"""Dumbwaiter: expensive values computed ahead of time, read in one query.

    import dumbwaiter
    dumbwaiter.get_value("orders-total", default=0)

The readers are loaded on first use, so importing this package before
Django's app registry is ready (in settings, for example) is safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dumbwaiter.exceptions import ConfigurationError, DumbwaiterError, UnknownFunction

if TYPE_CHECKING:
    from dumbwaiter.readers import (
        LastError,
        PastValue,
        Result,
        aget_history,
        aget_result,
        aget_value,
        get_history,
        get_result,
        get_value,
    )

__all__ = [
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
]

# Everything but the exceptions lives in dumbwaiter.readers.
_READERS = frozenset(__all__) - {
    "ConfigurationError",
    "DumbwaiterError",
    "UnknownFunction",
}


def __getattr__(name: str) -> Any:
    if name in _READERS:
        from dumbwaiter import readers

        value = getattr(readers, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'dumbwaiter' has no attribute {name!r}")
