"""2. Idle tick: 1000 functions configured, none due.

Counts the queries of one tick in process, then times the whole process of
``python bench/manage.py dumbwaiter_tick --once`` against ``python
bench/manage.py noop`` (a command that does nothing, also without system
checks) under the same settings, alternating the two.

    BENCH_FUNCTIONS=1000 python -m bench.idle_tick [--rounds 20]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from bench.common import (
    arguments,
    median,
    migrate,
    ms,
    quiet,
    ratio,
    result,
    setup_django,
)

MANAGE = str(Path(__file__).resolve().parent / "manage.py")


def main() -> None:
    parser = arguments(__doc__ or "")
    parser.set_defaults(rounds=20)
    args = parser.parse_args()
    setup_django()
    migrate()

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from dumbwaiter.models import FunctionState, HistoryEntry

    functions = len(settings.DUMBWAITER_FUNCTION_LIST)
    db = settings.VENDOR
    with quiet():
        call_command("dumbwaiter_tick", "--once")
    # None due for the next day, whatever the time of day now.
    FunctionState.objects.update(next_due=timezone.now() + timedelta(days=1))
    history = HistoryEntry.objects.count()

    with CaptureQueriesContext(connection) as queries, quiet():
        call_command("dumbwaiter_tick", "--once")
    count = len(queries)
    result(
        "idle",
        db,
        f"queries of an idle tick ({functions} functions, none due)",
        count,
        "queries",
        "<= 2",
        count <= 2,
        "; ".join(q["sql"][:60] for q in queries),
    )

    commands = {"tick": ["dumbwaiter_tick", "--once"], "noop": ["noop"]}
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    env = dict(os.environ)
    for index in range(args.rounds + 1):
        order = list(commands) if index % 2 == 0 else list(commands)[::-1]
        for name in order:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, MANAGE, *commands[name]],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            elapsed = time.perf_counter() - started
            if done.returncode != 0 or done.stdout or done.stderr:
                raise SystemExit(f"{name} failed: {done.stdout}{done.stderr}")
            if index > 0:  # the first pair warms the disk cache
                seconds[name].append(elapsed)
    if HistoryEntry.objects.count() != history:
        raise SystemExit("an idle tick ran a function")
    tick, noop = median(seconds["tick"]), median(seconds["noop"])
    figure = ratio(seconds["tick"], seconds["noop"])
    result(
        "idle",
        db,
        f"idle tick process / noop command process ({functions} functions)",
        figure,
        "x",
        "<= 1.15",
        figure <= 1.15,
        f"{ms(tick)} vs {ms(noop)}, {args.rounds} runs each",
    )


if __name__ == "__main__":
    main()
