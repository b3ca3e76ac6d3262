"""Django settings for the benchmarks, driven by environment variables.

The bench scripts set these for themselves and for the child processes they
start; nothing here is meant to be set by hand.

    BENCH_DB          sqlite (default) | postgresql
    BENCH_SQLITE      the SQLite file (default: one in the system temp dir)
    BENCH_PG_NAME     the PostgreSQL database (default dumbwaiter_bench)
    BENCH_FUNCTIONS   how many trivial functions to configure (default 0)
    BENCH_FREQUENCY   their frequency in seconds (default one day)
    BENCH_SAVED       their ``saved`` (default 10)
    BENCH_LOCK_DIR    DUMBWAITER_LOCK_DIR
    BENCH_READ        "1": also configure "report", a value of about 4 KB
    BENCH_STORAGE     DUMBWAITER_STORAGE (default: dumbwaiter's own default)
    BENCH_REDIS_DB    the Redis database number of the "redis" cache (default 13)
    BENCH_GROWTH      "1": two databases, "small" and "big", and a router that
                      sends dumbwaiter's models to the one named in
                      bench.benchapp.router.ACTIVE (see bench/growth.py)
    BENCH_PEER        "" (dumbwaiter), "django-cron" or "chroniker"
"""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "dumbwaiter-bench-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS: list[str] = []

PEER = os.environ.get("BENCH_PEER", "")

INSTALLED_APPS = ["django.contrib.contenttypes", "bench.benchapp"]
if PEER == "django-cron":
    INSTALLED_APPS += ["django_cron"]
elif PEER == "chroniker":
    # Its installation notes ask for sites; its models import auth and admin.
    INSTALLED_APPS += [
        "django.contrib.auth",
        "django.contrib.admin",
        "django.contrib.sites",
        "chroniker",
    ]
    SITE_ID = 1
else:
    INSTALLED_APPS += ["dumbwaiter"]

VENDOR = os.environ.get("BENCH_DB", "sqlite")


def _database(name: str) -> dict[str, object]:
    if VENDOR == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if VENDOR == "postgresql":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    raise RuntimeError(f"BENCH_DB={VENDOR!r}: use sqlite or postgresql")


if VENDOR == "sqlite":
    _main = os.environ.get(
        "BENCH_SQLITE", os.path.join(tempfile.gettempdir(), "dumbwaiter-bench.sqlite3")
    )
else:
    _main = os.environ.get("BENCH_PG_NAME", "dumbwaiter_bench")

DATABASES = {"default": _database(_main)}
if os.environ.get("BENCH_GROWTH") == "1":
    _suffix = ".{}" if VENDOR == "sqlite" else "_{}"
    DATABASES["small"] = _database(_main + _suffix.format("small"))
    DATABASES["big"] = _database(_main + _suffix.format("big"))
    DATABASE_ROUTERS = ["bench.benchapp.router.Switch"]

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "db": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "bench_cache",
    },
    "redis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/" + os.environ.get("BENCH_REDIS_DB", "13"),
        "KEY_PREFIX": "dumbwaiter-bench",
    },
}

DUMBWAITER_FUNCTION_LIST = [
    {
        "function": "bench.benchapp.functions.trivial",
        "name": f"f{i:04d}",
        "frequency": float(os.environ.get("BENCH_FREQUENCY", 86400)),
        "saved": int(os.environ.get("BENCH_SAVED", 10)),
    }
    for i in range(int(os.environ.get("BENCH_FUNCTIONS", 0)))
]
if os.environ.get("BENCH_READ") == "1":
    DUMBWAITER_FUNCTION_LIST.append(
        {"function": "bench.benchapp.functions.report", "name": "report"}
    )
if "BENCH_STORAGE" in os.environ:
    DUMBWAITER_STORAGE = os.environ["BENCH_STORAGE"]
if "BENCH_LOCK_DIR" in os.environ:
    DUMBWAITER_LOCK_DIR = os.environ["BENCH_LOCK_DIR"]

if PEER == "django-cron":
    # RUN_EVERY_MINS = 0: every job is due on every run (bench/benchapp/cronjobs.py).
    CRON_CLASSES = [
        f"bench.benchapp.cronjobs.Job{i:04d}"
        for i in range(int(os.environ.get("BENCH_FUNCTIONS", 0)))
    ]
