"""Turning values into bytes and back.

``DUMBWAITER_SERIALIZER`` names a module with an object called
``serializer`` that has ``serialize(value) -> bytes`` and
``deserialize(data: bytes) -> value``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Protocol

from dumbwaiter import conf
from dumbwaiter.exceptions import ConfigurationError


class Serializer(Protocol):
    def serialize(self, value: Any) -> bytes: ...

    def deserialize(self, data: bytes) -> Any: ...


def get_serializer() -> Serializer:
    """The configured serializer; looked up on every read, so kept cheap."""
    path = conf.serializer_path()
    module = sys.modules.get(path)
    if module is not None:
        serializer = getattr(module, "serializer", None)
        if serializer is not None:
            return serializer  # type: ignore[no-any-return]
    try:
        return importlib.import_module(path).serializer  # type: ignore[no-any-return]
    except Exception as exc:
        raise ConfigurationError(
            f"DUMBWAITER_SERIALIZER {path!r} is not usable ({type(exc).__name__}: "
            f"{exc}); run 'manage.py check' for details."
        ) from exc
