"""JSON through Django's encoder, for projects that want no pickle at all.

Tuples come back as lists, and dates, times, decimals and UUIDs as strings.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


class JSONSerializer:
    def serialize(self, value: Any) -> bytes:
        return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":")).encode()

    def deserialize(self, data: bytes) -> Any:
        return json.loads(data)


serializer = JSONSerializer()
