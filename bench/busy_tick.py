"""3. Busy tick: N trivial functions, all due in one tick.

Runs the real command in process (``call_command("dumbwaiter_tick",
"--once")``), alternating a tick with N due functions and one with none, and
reports the marginal cost per function: (time with N - time with 0) / N.
Both are run under override_settings, so settings access costs them alike.
Before every tick with N functions, one UPDATE makes them all due again
(not timed).

    python -m bench.busy_tick [--n 1000] [--rounds 5] [--threaded 1|0]
"""

from __future__ import annotations

import time
from datetime import timedelta

from bench.common import (
    arguments,
    median,
    migrate,
    ms,
    quiet,
    result,
    setup_django,
)


def main() -> None:
    parser = arguments(__doc__ or "")
    parser.set_defaults(rounds=5)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threaded", type=int, choices=[0, 1], default=1)
    args = parser.parse_args()
    setup_django()
    migrate()

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from dumbwaiter.models import FunctionState

    entries = [
        {
            "function": "bench.benchapp.functions.trivial",
            "name": f"f{i:04d}",
            "frequency": 86400,
        }
        for i in range(args.n)
    ]
    threaded = bool(args.threaded)
    cases = {
        args.n: override_settings(
            DUMBWAITER_FUNCTION_LIST=entries, DUMBWAITER_THREADED=threaded
        ),
        0: override_settings(DUMBWAITER_FUNCTION_LIST=[], DUMBWAITER_THREADED=threaded),
    }

    def tick(n: int) -> float:
        if n:
            FunctionState.objects.update(next_due=timezone.now() - timedelta(hours=1))
        with cases[n], quiet():
            started = time.perf_counter()
            call_command("dumbwaiter_tick", "--once")
            return time.perf_counter() - started

    # Warm up: the first tick creates the state rows.
    tick(args.n)
    tick(0)
    FunctionState.objects.update(next_due=timezone.now() - timedelta(hours=1))
    with CaptureQueriesContext(connection) as queries, cases[args.n], quiet():
        call_command("dumbwaiter_tick", "--once")
    runs = FunctionState.objects.filter(status="ok").count()
    if runs != args.n:
        raise SystemExit(f"{runs} of {args.n} functions ran")

    with_n: list[float] = []
    without: list[float] = []
    for index in range(args.rounds):
        order = [args.n, 0] if index % 2 == 0 else [0, args.n]
        for n in order:
            (with_n if n else without).append(tick(n))
    marginal = median([(a - b) / args.n for a, b in zip(with_n, without, strict=True)])
    mode = "threaded" if threaded else "one after another"
    db = settings.VENDOR
    result(
        "busy",
        db,
        f"marginal cost per due function, {mode}",
        marginal * 1e3,
        "ms",
        detail=(
            f"tick with {args.n}: {ms(median(with_n))}, with 0: "
            f"{ms(median(without))}; {args.rounds} rounds"
        ),
    )
    transactions = sum(q["sql"].upper().startswith("BEGIN") for q in queries)
    # Django logs an executemany once, as "N times: SQL"; the budget counts
    # the N statements the database ran.
    executed = 0
    for query in queries:
        times, sep, _ = query["sql"].partition(" times: ")
        executed += int(times) if sep and times.isdigit() else 1
    result(
        "busy",
        db,
        f"statements per due function, {mode} (BEGIN/COMMIT included)",
        executed / args.n,
        "statements",
        "<= 4",
        executed / args.n <= 4,
        f"{executed} statements in {len(queries)} round trips for {args.n} "
        f"functions, {transactions} transactions",
    )


if __name__ == "__main__":
    main()
