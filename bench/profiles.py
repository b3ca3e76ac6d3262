"""cProfile of the paths the benchmarks time, for when a target is missed.

    bench/.venv-dumbwaiter/bin/python -m bench.profiles read [--db postgresql]
    bench/.venv-dumbwaiter/bin/python -m bench.profiles redis
    bench/.venv-dumbwaiter/bin/python -m bench.profiles busy [--threaded 0]

Run from the checkout's root after bench/run has made the virtual
environment. SQLite in a temporary folder unless --db postgresql (then the
database dumbwaiter_bench_profile, made and dropped here). Prints the top
entries by own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["read", "redis", "busy"])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--threaded", type=int, choices=[0, 1], default=1)
    parser.add_argument("--calls", type=int, default=5000, help="reads to profile")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dumbwaiter-bench-profile-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        BENCH_DB=args.db,
        BENCH_SQLITE=str(workdir / "profile.sqlite3"),
        BENCH_PG_NAME="dumbwaiter_bench_profile",
        BENCH_LOCK_DIR=str(workdir / "locks"),
    )
    if args.what in ("read", "redis"):
        os.environ["BENCH_READ"] = "1"
    if args.what == "redis":
        os.environ["BENCH_STORAGE"] = "cache:redis"
    if args.what == "busy":
        os.environ["BENCH_FUNCTIONS"] = "1000"
        os.environ["BENCH_FREQUENCY"] = "86400"

    databases: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if args.db == "postgresql":
        from bench.run import pg_database

        databases = pg_database("dumbwaiter_bench_profile")
    try:
        with databases:
            profile = run(args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stats = pstats.Stats(profile, stream=sys.stdout)
    stats.strip_dirs()
    for order in ("tottime", "cumulative"):
        print(f"\n--- {args.what} on {args.db}, by {order}")
        stats.sort_stats(order).print_stats(args.top)


def run(args: argparse.Namespace) -> cProfile.Profile:
    from bench.common import migrate, quiet, setup_django

    setup_django()
    migrate()
    from datetime import timedelta

    from django.core.management import call_command
    from django.test import override_settings
    from django.utils import timezone

    from dumbwaiter import get_value
    from dumbwaiter.models import FunctionState

    with quiet():
        call_command("dumbwaiter_tick", "--once")
    profile = cProfile.Profile()
    if args.what in ("read", "redis"):
        for _ in range(200):
            get_value("report")
        profile.enable()
        for _ in range(args.calls):
            get_value("report")
        profile.disable()
        if args.what == "redis":
            from django.core.cache import caches

            from dumbwaiter.storage import CacheStorage

            caches["redis"].delete(CacheStorage.key("report"))
        return profile
    FunctionState.objects.update(next_due=timezone.now() - timedelta(hours=1))
    with override_settings(DUMBWAITER_THREADED=bool(args.threaded)), quiet():
        profile.enable()
        call_command("dumbwaiter_tick", "--once")
        profile.disable()
    return profile


if __name__ == "__main__":
    main()
