"""Every ``DUMBWAITER_*`` setting, read at the moment it is needed.

Nothing here is read at import time, so ``override_settings`` in tests and
settings changed after start-up are always seen. Each accessor owns its
default; the README lists them all.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

from django.conf import settings

DEFAULT_FREQUENCY = 300
DEFAULT_SAVED = 10
DEFAULT_SERIALIZER = "dumbwaiter.serializers.pickler"
DEFAULT_LEASE = 60.0
DEFAULT_MAX_WORKERS = 8
DEFAULT_STALE_AFTER = 2.0


def function_list() -> Any:
    """The raw ``DUMBWAITER_FUNCTION_LIST``; :mod:`dumbwaiter.specs` validates it."""
    return getattr(settings, "DUMBWAITER_FUNCTION_LIST", [])


def default_frequency() -> Any:
    return getattr(settings, "DUMBWAITER_DEFAULT_FREQUENCY", DEFAULT_FREQUENCY)


def default_saved() -> Any:
    return getattr(settings, "DUMBWAITER_DEFAULT_SAVED", DEFAULT_SAVED)


def raw_threaded() -> Any:
    return getattr(settings, "DUMBWAITER_THREADED", True)


def threaded() -> bool:
    return bool(raw_threaded())


def max_workers() -> Any:
    """Upper bound of the thread pool a threaded tick runs functions in."""
    return getattr(settings, "DUMBWAITER_MAX_WORKERS", DEFAULT_MAX_WORKERS)


def serializer_path() -> Any:
    return getattr(settings, "DUMBWAITER_SERIALIZER", DEFAULT_SERIALIZER)


def pickle_protocol() -> Any:
    import pickle

    return getattr(settings, "DUMBWAITER_PICKLE_PROTOCOL", pickle.DEFAULT_PROTOCOL)


def lease() -> Any:
    """Seconds a claim stays valid without renewal.

    A running tick renews its claims every third of this, so it only bounds
    how long a function stays blocked after its host died.
    """
    return getattr(settings, "DUMBWAITER_LEASE", DEFAULT_LEASE)


def stale_after() -> Any:
    """How many periods old a value may grow before it counts as stale."""
    return getattr(settings, "DUMBWAITER_STALE_AFTER", DEFAULT_STALE_AFTER)


def storage() -> Any:
    """``"database"`` or ``"cache:<alias>"``: where values are kept."""
    return getattr(settings, "DUMBWAITER_STORAGE", "database")


def time_zone() -> str:
    """The zone cron schedules use unless an entry names its own."""
    return getattr(settings, "TIME_ZONE", None) or "UTC"


def configured_lock_dir() -> Any:
    """The raw ``DUMBWAITER_LOCK_DIR``, None when unset."""
    return getattr(settings, "DUMBWAITER_LOCK_DIR", None)


def lock_dir() -> str:
    """Where the per-function lock files live.

    The default is a folder in the system temp dir named after this project
    (settings module and database), so two projects on one host never share
    locks while every tick of one project does.
    """
    configured = configured_lock_dir()
    if configured:
        return os.fspath(configured)
    database = settings.DATABASES.get("default", {})
    identity = "|".join(
        [
            str(os.environ.get("DJANGO_SETTINGS_MODULE", "")),
            str(database.get("ENGINE", "")),
            str(database.get("HOST", "")),
            str(database.get("NAME", "")),
        ]
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"dumbwaiter-{digest}")
