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

from dumbwaiter import conf
from dumbwaiter.exceptions import ConfigurationError

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
    """A non-blocking lock for one function name.

    The lock is filelock's primitive (``flock`` on Unix) on a descriptor this
    object opens. A tick takes one per due function, so the per-lock cost
    matters: FileLock's own bookkeeping (fork tracking, path registry) cost
    several times the system calls here. The lock file is never deleted:
    removing it on release would let a process that opened the old file and
    one that created a new file both hold "the" lock.
    """

    def __init__(self, name: str, directory: str | None = None) -> None:
        self.name = name
        self.directory = directory or conf.lock_dir()
        self.path = os.path.join(self.directory, lock_file_name(name))
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if it is free; False if another process holds it."""
        # Imported here: a tick with nothing due never takes a lock and
        # should not pay for loading filelock.
        from filelock import lock_descriptor

        if self._fd is not None:
            return True
        try:
            fd = self._open()
        except OSError as exc:
            raise ConfigurationError(
                f"DUMBWAITER_LOCK_DIR {self.directory!r} is not usable: {exc}. "
                "Give it a directory on a local filesystem that every tick's "
                "user can write to (a tick run once as root can leave the "
                "default one owned by root: remove it)."
            ) from exc
        try:
            locked = lock_descriptor(fd, blocking=False)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def mark_started(self, token: str) -> None:
        """Note in the held lock file that the run holding ``token`` began.

        A tick on this host that later finds the lock free reads it back to
        tell a run that died while running from one that never started.
        """
        if self._fd is not None:
            os.pwrite(self._fd, token.encode().ljust(_MARK_SIZE), 0)

    def started_token(self) -> str:
        """The token the last run under this lock marked as started."""
        if self._fd is None:
            return ""
        return os.pread(self._fd, _MARK_SIZE, 0).decode(errors="replace").strip()

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        _ensure_directory(self.directory)
        try:
            return os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            # The directory went away (a temp cleaner) since it was created.
            _known_directories.discard(self.directory)
            _ensure_directory(self.directory)
            return os.open(self.path, flags, 0o600)

    def release(self) -> None:
        from filelock import unlock_descriptor

        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                unlock_descriptor(fd)
            finally:
                os.close(fd)

    @property
    def is_held(self) -> bool:
        return self._fd is not None


# Run tokens are 32 hex characters.
_MARK_SIZE = 32

_known_directories: set[str] = set()


def _ensure_directory(directory: str) -> None:
    """Create the lock directory once per process, not once per lock."""
    if directory not in _known_directories:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _known_directories.add(directory)
