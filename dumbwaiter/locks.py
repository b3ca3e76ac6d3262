"""The per-function file lock: the cheap guard between ticks on one host.

The lock is an OS-level lock (flock) on a file in the project's lock
directory, so it disappears with the process that held it, whatever way it
died. It never waits: a held lock means another tick on this host is
computing that function right now.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from typing import Any

from dumbwaiter import conf

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def lock_file_name(name: str) -> str:
    """A file name that is safe, short and unique for any function name.

    The readable part helps an operator; the digest keeps names that only
    differ in dropped characters apart.
    """
    readable = _UNSAFE.sub("_", name).strip("._")[:60] or "function"
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{readable}-{digest}.lock"


def lock_scope(directory: str | None = None) -> str:
    """Identifies "this host and this lock directory" in the state table."""
    directory = os.path.realpath(directory or conf.lock_dir())
    raw = f"{socket.gethostname()}|{directory}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class FunctionLock:
    """A non-blocking lock for one function name."""

    def __init__(self, name: str, directory: str | None = None) -> None:
        self.name = name
        self.directory = directory or conf.lock_dir()
        self.path = os.path.join(self.directory, lock_file_name(name))
        self._lock: Any = None

    def acquire(self) -> bool:
        """Take the lock if it is free; False if another process holds it."""
        # Imported here: a tick with nothing due never takes a lock and
        # should not pay for loading filelock.
        from filelock import FileLock, Timeout

        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        if self._lock is None:
            # thread_local=False: the tick takes and releases every lock from
            # its main thread; no other thread owns it.
            self._lock = FileLock(self.path, thread_local=False)
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        if self._lock is not None and self._lock.is_locked:
            self._lock.release()

    @property
    def is_held(self) -> bool:
        return self._lock is not None and bool(self._lock.is_locked)
