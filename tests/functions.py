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
