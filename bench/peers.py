"""5. Peers: the busy-tick workload through dumbwaiter, django-cron, chroniker.

Run with the interpreter of the system's own virtual environment and
``BENCH_PEER`` set (bench/run.py does both); the database is SQLite for all.
Each system runs its own command in process, alternating a run with N due
jobs and a run with none; the figure is the marginal cost per job, (time with
N - time with 0) / N, which leaves out start-up. With ``--serve`` the process
waits for "N" or "0" on stdin before each run, so that bench/run.py can
interleave the three systems (one process each) round by round.

- dumbwaiter: N trivial functions (``dumbwaiter_tick --once``, default
  settings: threaded).
- django-cron: CRON_CLASSES of N CronJobBase subclasses with RUN_EVERY_MINS = 0,
  so each is due on every run (``runcrons``, default cache lock).
- chroniker: N Job rows whose command is ``noop`` and whose next_run is in the
  past (``cron --sync --update_heartbeat=0``: its serial mode, without the
  heartbeat thread whose stop() waits up to 5 s per job; the default mode
  starts a process per job and polls them every second).

    BENCH_PEER=django-cron BENCH_FUNCTIONS=1000 python -m bench.peers
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench.common import (
    arguments,
    emit,
    median,
    migrate,
    ms,
    quiet,
    row,
    setup_django,
)


def dumbwaiter_case(n: int) -> tuple[Callable[[int], Any], list[str]]:
    from django.test import override_settings
    from django.utils import timezone

    from dumbwaiter.models import FunctionState

    entries = [
        {
            "function": "bench.benchapp.functions.trivial",
            "name": f"f{i:04d}",
            "frequency": 86400,
        }
        for i in range(n)
    ]
    lists = {n: override_settings(DUMBWAITER_FUNCTION_LIST=entries)}
    lists[0] = override_settings(DUMBWAITER_FUNCTION_LIST=[])

    def prepare(count: int) -> Any:
        FunctionState.objects.update(next_due=timezone.now() - timedelta(hours=1))
        return lists[count]

    return prepare, ["dumbwaiter_tick", "--once"]


def django_cron_case(n: int) -> tuple[Callable[[int], Any], list[str]]:
    from django.conf import settings
    from django.test import override_settings

    lists = {
        n: override_settings(CRON_CLASSES=settings.CRON_CLASSES[:n]),
        0: override_settings(CRON_CLASSES=[]),
    }
    return lists.__getitem__, ["runcrons"]


def chroniker_case(n: int) -> tuple[Callable[[int], Any], list[str]]:
    import contextlib

    from chroniker.models import Job
    from django.utils import timezone

    Job.objects.bulk_create(
        [
            Job(
                name=f"job{i:04d}",
                frequency="MINUTELY",
                command="noop",
                next_run=timezone.now() - timedelta(hours=1),
            )
            for i in range(n)
        ]
    )

    def prepare(count: int) -> Any:
        Job.objects.update(
            enabled=bool(count),
            next_run=timezone.now() - timedelta(hours=1),
            is_running=False,
            force_run=False,
        )
        return contextlib.nullcontext()

    return prepare, ["cron", "--sync", "--update_heartbeat=0"]


CASES = {
    "": dumbwaiter_case,
    "django-cron": django_cron_case,
    "chroniker": chroniker_case,
}


READY_PREFIX = "BENCH-READY "
TIME_PREFIX = "BENCH-TIME "


def main() -> None:
    parser = arguments(__doc__ or "")
    parser.set_defaults(rounds=5)
    parser.add_argument(
        "--serve",
        action="store_true",
        help="after the warm-up, time one run per line read from stdin (N or 0), "
        "so that bench/run.py can interleave the three systems",
    )
    args = parser.parse_args()
    setup_django()
    migrate()

    import django
    from django.core.management import call_command

    peer = os.environ.get("BENCH_PEER", "")
    n = int(os.environ.get("BENCH_FUNCTIONS", 0))
    prepare, command = CASES[peer](n)

    def run(count: int) -> float:
        context = prepare(count)
        with context, quiet():
            started = time.perf_counter()
            call_command(*command)
            return time.perf_counter() - started

    run(n)  # warm-up: imports, first rows
    run(0)
    about = {
        "name": peer or "dumbwaiter",
        "n": n,
        "command": " ".join(command),
        "django": django.get_version(),
    }
    if args.serve:
        print(READY_PREFIX + json.dumps(about), flush=True)
        for line in sys.stdin:
            count = int(line)
            print(f"{TIME_PREFIX}{count} {run(count)!r}", flush=True)
        return

    with_n: list[float] = []
    without: list[float] = []
    for index in range(args.rounds):
        for count in [n, 0] if index % 2 == 0 else [0, n]:
            (with_n if count else without).append(run(count))
    emit(report(about, with_n, without))


def report(
    about: dict[str, Any], with_n: list[float], without: list[float]
) -> dict[str, Any]:
    """The row of one system's marginal cost per job."""
    n = about["n"]
    marginal = median([(a - b) / n for a, b in zip(with_n, without, strict=True)])
    return row(
        "peers",
        "sqlite",
        f"{about['name']}: marginal cost per job",
        marginal * 1e3,
        "ms",
        detail=(
            f"N={n}: {ms(median(with_n))}, 0: {ms(median(without))}; "
            f"{about['command']}; Django {about['django']}; {len(with_n)} rounds"
        ),
    )


if __name__ == "__main__":
    main()
