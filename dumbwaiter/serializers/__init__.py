"""Turning values into bytes and back.

``DUMBWAITER_SERIALIZER`` names a module with an object called
``serializer`` that has ``serialize(value) -> bytes`` and
``deserialize(data: bytes) -> value``.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from dumbwaiter import conf


class Serializer(Protocol):
    def serialize(self, value: Any) -> bytes: ...

    def deserialize(self, data: bytes) -> Any: ...


def get_serializer() -> Serializer:
    """The configured serializer; the module import is cached by Python."""
    module = importlib.import_module(conf.serializer_path())
    return module.serializer  # type: ignore[no-any-return]
