"""Time as dumbwaiter keeps it: aware UTC in the code, UTC in the database.

With ``USE_TZ = False`` Django stores naive datetimes and some backends
refuse aware ones, so values cross the ORM boundary through ``to_db`` and
``from_db``; the stored wall time is UTC either way.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings


def now() -> datetime:
    return datetime.now(UTC)


def to_db(value: datetime | None) -> datetime | None:
    if value is None or settings.USE_TZ:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def from_db(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
