"""The default serializer: any picklable value, at DUMBWAITER_PICKLE_PROTOCOL."""

from __future__ import annotations

import pickle
from typing import Any

from dumbwaiter import conf


class PickleSerializer:
    def serialize(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=conf.pickle_protocol())

    def deserialize(self, data: bytes) -> Any:
        # Payloads are only ever written by this project's own tick; the
        # database is trusted as much as the code that reads it.
        return pickle.loads(data)


serializer = PickleSerializer()
