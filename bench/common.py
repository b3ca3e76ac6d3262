"""What the benchmark scripts share: Django start-up, timing, results.

Every figure is a ratio or a difference measured within one run, so the
machine's speed on the day cancels out. Contenders are interleaved
(A B A B ...) and each round is summarised by its median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()


def migrate(database: str = "default") -> None:
    from django.core.management import call_command

    call_command("migrate", database=database, verbosity=0)


def median(values: list[float]) -> float:
    return statistics.median(values)


def calibrate(function: Callable[[], Any], seconds: float = 0.05) -> int:
    """How many calls of ``function`` take about ``seconds``."""
    loops = 1
    while True:
        started = time.perf_counter()
        for _ in range(loops):
            function()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds / 4 or loops >= 1 << 20:
            return max(1, int(loops * seconds / max(elapsed, 1e-9)))
        loops *= 4


def interleaved(
    contenders: dict[str, Callable[[], Any]], rounds: int, seconds: float = 0.05
) -> dict[str, list[float]]:
    """Seconds per call of each contender, one figure per round.

    Each round times a loop of every contender in turn, starting with a
    different one each round, so drift on a shared machine hits them alike.
    """
    loops = {name: calibrate(f, seconds) for name, f in contenders.items()}
    names = list(contenders)
    per_call: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            function, count = contenders[name], loops[name]
            started = time.perf_counter()
            for _ in range(count):
                function()
            per_call[name].append((time.perf_counter() - started) / count)
    return per_call


def ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the per-round ratios (rounds are paired in time)."""
    return median([a / b for a, b in zip(numerators, denominators, strict=True)])


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Send what the commands print to /dev/null, as cron's pipe would take it."""
    with (
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        yield


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def row(
    bench: str,
    db: str,
    what: str,
    figure: float | None,
    unit: str,
    target: str = "",
    ok: bool | None = None,
    detail: str = "",
) -> dict[str, Any]:
    """One row of the table."""
    return {
        "bench": bench,
        "db": db,
        "what": what,
        "figure": figure,
        "unit": unit,
        "target": target,
        "ok": ok,
        "detail": detail,
    }


def emit(line: dict[str, Any]) -> None:
    """Print a row on stdout for bench/run.py to collect."""
    print(RESULT_PREFIX + json.dumps(line), flush=True)


def result(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Make a row (same arguments as :func:`row`) and print it."""
    line = row(*args, **kwargs)
    emit(line)
    return line


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--rounds", type=int, default=15, help="interleaved rounds (medians)"
    )
    return parser


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
