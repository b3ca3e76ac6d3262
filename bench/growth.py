"""4. Growth: does a tick cost more once the history table is big?

Two databases in one process: "small" holds 1,000 history rows, "big"
1,000,000, both spread over 1,000 names that are not configured (values of
64 bytes, inserted by the database itself). N functions are configured, with
``saved`` S; S + 1 warm-up ticks on each database bring their own history to
S rows, so that every timed tick inserts one row per function and its trim
deletes one. A router sends dumbwaiter's models to one database or the other,
and the ticks alternate between them (the real command, in process).

    BENCH_GROWTH=1 BENCH_FUNCTIONS=100 BENCH_SAVED=5 python -m bench.growth
"""

from __future__ import annotations

import time
from datetime import timedelta

from bench.common import (
    arguments,
    log,
    median,
    migrate,
    ms,
    quiet,
    ratio,
    result,
    setup_django,
)

NAMES = 1000
SIZES = {"small": 1_000, "big": 1_000_000}


def fill(alias: str, rows: int) -> None:
    """Insert ``rows`` history rows for NAMES unconfigured names, in SQL."""
    from django.db import connections

    from dumbwaiter.models import HistoryEntry

    connection = connections[alias]
    table = connection.ops.quote_name(HistoryEntry._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g "
                f"WHERE x < %s) INSERT INTO {table} "
                f"(name, value, computed_at, duration) "
                f"SELECT printf('old-%%04d', x %% %s), randomblob(64), "
                f"datetime('now', '-' || x || ' seconds'), 0.01 FROM g",
                [rows, NAMES],
            )
        elif connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} (name, value, computed_at, duration) "
                f"SELECT 'old-' || lpad((x %% %s)::text, 4, '0'), "
                f"decode(md5(x::text) || md5((x + 1)::text), 'hex'), "
                f"now() - x * interval '1 second', 0.01 "
                f"FROM generate_series(1, %s) AS x",
                [NAMES, rows],
            )
        else:
            raise SystemExit(f"no fast fill for {connection.vendor}")
    if connection.vendor == "postgresql":
        # Autovacuum must not wake up in the middle of the measurement.
        connection.ensure_connection()
        autocommit = connection.get_autocommit()
        connection.set_autocommit(True)
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {table}")
        connection.set_autocommit(autocommit)
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def main() -> None:
    parser = arguments(__doc__ or "")
    parser.set_defaults(rounds=10)
    args = parser.parse_args()
    setup_django()

    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from bench.benchapp import router
    from dumbwaiter.models import FunctionState, HistoryEntry

    functions = len(settings.DUMBWAITER_FUNCTION_LIST)
    saved = settings.DUMBWAITER_FUNCTION_LIST[0]["saved"]
    for alias, rows in SIZES.items():
        migrate(alias)
        started = time.perf_counter()
        fill(alias, rows)
        took = time.perf_counter() - started
        log(f"growth: {rows} history rows in {alias} in {took:.1f}s")

    def tick(alias: str) -> float:
        router.ACTIVE = alias
        FunctionState.objects.update(next_due=timezone.now() - timedelta(hours=1))
        with quiet():
            started = time.perf_counter()
            call_command("dumbwaiter_tick", "--once")
            return time.perf_counter() - started

    for alias in SIZES:
        for _ in range(saved + 1):
            tick(alias)
    seconds: dict[str, list[float]] = {alias: [] for alias in SIZES}
    for index in range(args.rounds):
        order = list(SIZES) if index % 2 == 0 else list(SIZES)[::-1]
        for alias in order:
            seconds[alias].append(tick(alias))

    for alias, rows in SIZES.items():
        router.ACTIVE = alias
        own = HistoryEntry.objects.filter(name__startswith="f").count()
        total = HistoryEntry.objects.count()
        if own != functions * saved or total != rows + own:
            raise SystemExit(f"{alias}: {total} rows, {own} of the configured ones")
    small, big = median(seconds["small"]), median(seconds["big"])
    figure = ratio(seconds["big"], seconds["small"])
    result(
        "growth",
        settings.VENDOR,
        f"tick of {functions} due functions with 1,000,000 history rows / with 1,000",
        figure,
        "x",
        "<= 1.20",
        figure <= 1.20,
        f"{ms(big)} vs {ms(small)} per tick (saved={saved}), {args.rounds} rounds",
    )


if __name__ == "__main__":
    main()
