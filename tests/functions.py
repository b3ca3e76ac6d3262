"""Functions the tests configure. Child processes import them by dotted path.

Markers are files, not database rows, so counting runs never depends on the
database under test.
"""

from __future__ import annotations

import os
import time
from typing import Any


def constant(value: Any = 42) -> Any:
    return value


def add(a: int, b: int) -> int:
    return a + b


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def not_picklable() -> Any:
    return lambda: None


def mark(marker: str, sleep: float = 0.0, value: Any = "done") -> Any:
    """Append one line to ``marker`` per run (with the pid), then sleep."""
    with open(marker, "a") as handle:
        handle.write(f"{os.getpid()} {time.time():.6f}\n")
        handle.flush()
        os.fsync(handle.fileno())
    if sleep:
        time.sleep(sleep)
    return value


def big(size: int) -> bytes:
    return os.urandom(size)


not_callable = 7


def span(
    marker: str,
    sleep: float = 0.0,
    release: str | None = None,
    value: Any = "done",
    timeout: float = 120.0,
) -> Any:
    """Write a start line, sleep (or wait for ``release`` to exist), an end line.

    The lines carry the pid and the time, so a test can check that no two
    runs ever overlapped and whether a run is still in progress.
    """

    def line(what: str) -> None:
        with open(marker, "a") as handle:
            handle.write(f"{what} {os.getpid()} {time.time():.6f}\n")
            handle.flush()
            os.fsync(handle.fileno())

    line("start")
    if sleep:
        time.sleep(sleep)
    if release is not None:
        deadline = time.monotonic() + timeout
        while not os.path.exists(release):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{release} never appeared")
            time.sleep(0.02)
    line("end")
    return value


def random_bytes(size: int, copy_to: str) -> bytes:
    """``size`` bytes from os.urandom; a copy goes to a file for the test."""
    data = os.urandom(size)
    with open(copy_to, "wb") as handle:
        handle.write(data)
    return data


# 256 characters of 1 to 4 UTF-8 bytes each (ASCII, Greek, CJK, emoji), one
# per possible byte value.
_TEXT_ALPHABET = (
    [chr(c) for c in range(0x30, 0x70)]
    + [chr(c) for c in range(0x3B1, 0x3F1)]
    + [chr(c) for c in range(0x4E00, 0x4E40)]
    + [chr(c) for c in range(0x1F600, 0x1F640)]
)


def random_text(length: int, copy_to: str) -> str:
    """A random str of ``length`` characters; a copy goes to a file (UTF-8)."""
    text = "".join(map(_TEXT_ALPHABET.__getitem__, os.urandom(length)))
    with open(copy_to, "w", encoding="utf-8") as handle:
        handle.write(text)
    return text


def count_states(repeat: int = 3, sleep: float = 0.05) -> int:
    """Count dumbwaiter's state rows a few times from the worker thread."""
    from dumbwaiter.models import FunctionState

    count = 0
    for _ in range(repeat):
        time.sleep(sleep)
        count = FunctionState.objects.count()
    return count


def exit_early(code: int = 3) -> None:
    """Leave the way a command-line helper would: SystemExit, a BaseException."""
    raise SystemExit(code)


def fail_with_nul() -> None:
    """Fails with a message PostgreSQL cannot store as text."""
    raise ValueError("bad header b'\x00\x01'")


def fail_with_surrogate() -> None:
    """Fails with a message holding a lone surrogate (as os.fsdecode makes)."""
    raise ValueError("cannot parse " + os.fsdecode(b"/tmp/\xff.csv"))


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


def fail_unprintable() -> None:
    raise _Unprintable()


def kill_process(marker: str) -> None:
    """Mark the run, then end the whole process at once, as a crash would."""
    with open(marker, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    os._exit(7)
