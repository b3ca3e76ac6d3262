"""1. Read path: what a view pays for dumbwaiter.get_value.

With the database storage (the default), get_value on a value of about 4 KB
against, in the same process and on the same database:

- a bare ORM lookup of the same row followed by the same deserialization
  (``values_list("value", flat=True)[:1]`` -> unseal -> pickle.loads);
- Django's DatabaseCache.get holding the same value.

With ``BENCH_STORAGE=cache:redis``: get_value against a bare ``cache.get`` of
the same key on the same RedisCache.

    python -m bench.read_path [--rounds 15]
"""

from __future__ import annotations

import pickle

from bench.common import (
    arguments,
    interleaved,
    median,
    migrate,
    quiet,
    ratio,
    result,
    setup_django,
    us,
)

NAME = "report"


def main() -> None:
    args = arguments(__doc__ or "").parse_args()
    setup_django()
    migrate()

    from django.conf import settings
    from django.core.cache import caches
    from django.core.management import call_command

    from bench.benchapp.functions import report
    from dumbwaiter import conf, get_value
    from dumbwaiter.models import FunctionState
    from dumbwaiter.storage import CacheStorage, unseal

    with quiet():
        call_command("dumbwaiter_tick", "--once")
    value = report()
    if get_value(NAME) != value:
        raise SystemExit("get_value did not return the stored report")
    db = settings.VENDOR

    if conf.storage() == "database":
        payload = FunctionState.objects.get(name=NAME).value
        size = f"payload {len(payload)} B"

        def bare() -> object:
            for stored in FunctionState.objects.filter(name=NAME).values_list(
                "value", flat=True
            )[:1]:
                body = unseal(NAME, bytes(stored))
                assert body is not None
                return pickle.loads(body)
            return None

        call_command("createcachetable", verbosity=0)
        cache = caches["db"]
        cache.set(NAME, value, timeout=None)
        if bare() != value or cache.get(NAME) != value:
            raise SystemExit("the contenders do not read the same value")
        times = interleaved(
            {
                "get_value": lambda: get_value(NAME),
                "bare": bare,
                "dbcache": lambda: cache.get(NAME),
            },
            args.rounds,
        )
        got, base, dbc = (median(times[k]) for k in ("get_value", "bare", "dbcache"))
        figure = ratio(times["get_value"], times["bare"])
        result(
            "read",
            db,
            "get_value / bare ORM lookup + unseal + loads",
            figure,
            "x",
            "<= 1.10",
            figure <= 1.10,
            f"{us(got)} vs {us(base)}; {size}",
        )
        figure = ratio(times["get_value"], times["dbcache"])
        result(
            "read",
            db,
            "get_value / DatabaseCache.get",
            figure,
            "x",
            "<= 1.00",
            figure <= 1.00,
            f"{us(got)} vs {us(dbc)}",
        )
        cache.delete(NAME)
    else:
        alias = conf.storage().removeprefix("cache:")
        cache = caches[alias]
        key = CacheStorage.key(NAME)
        entry = cache.get(key)
        if not isinstance(entry, bytes):
            raise SystemExit(f"nothing stored under {key} in the {alias!r} cache")
        # The target's "bare cache.get": the same value cached directly, so
        # that cache.get itself unpickles it, which is what a view using the
        # cache alone would do. For reference, a cache.get of dumbwaiter's own
        # entry, which returns bytes and deserializes nothing: a floor that
        # no reader that has to produce the value can reach.
        plain_key = "bench:plain:" + NAME
        cache.set(plain_key, value, timeout=None)
        times = interleaved(
            {
                "get_value": lambda: get_value(NAME),
                "get": lambda: cache.get(key),
                "plain": lambda: cache.get(plain_key),
            },
            args.rounds,
        )
        got, base = median(times["get_value"]), median(times["get"])
        plain = median(times["plain"])
        figure = ratio(times["get_value"], times["plain"])
        backend = settings.CACHES[alias]["BACKEND"].rsplit(".", 1)[-1]
        result(
            "read",
            f"{db}, {backend}",
            f"get_value / bare cache.get of the value ({conf.storage()})",
            figure,
            "x",
            "<= 1.30",
            figure <= 1.30,
            f"{us(got)} vs {us(plain)}",
        )
        result(
            "read",
            f"{db}, {backend}",
            "get_value / cache.get of the stored bytes, no deserializing (floor)",
            ratio(times["get_value"], times["get"]),
            "x",
            detail=f"{us(got)} vs {us(base)}; entry {len(entry)} B",
        )
        cache.delete_many([key, plain_key])


if __name__ == "__main__":
    main()
