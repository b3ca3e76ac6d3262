"""``DUMBWAITER_FUNCTION_LIST`` turned into validated, immutable specs.

One validation pass feeds three consumers: the system checks (each problem
becomes a check message with a stable ID), the tick (which exits 2 on any
problem) and the readers (which need the set of known names). The result is
cached per process and dropped whenever a ``DUMBWAITER_*`` setting changes.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from dumbwaiter import conf
from dumbwaiter.exceptions import ConfigurationError, UnknownFunction
from dumbwaiter.schedules import Cron, Frequency, Schedule

# The name is the unique key of the state table. 191 characters of utf8mb4
# (4 bytes each) is the longest that fits MySQL's classic 767-byte index
# limit, so the same limit holds on every database.
MAX_NAME_LENGTH = 191

KNOWN_KEYS = frozenset(
    {
        "function",
        "name",
        "frequency",
        "schedule",
        "timezone",
        "args",
        "kwargs",
        "saved",
        "timeout",
        "retry_after",
    }
)


@dataclass(frozen=True)
class Problem:
    """One configuration mistake, in the shape of a system check message."""

    id: str
    msg: str
    hint: str

    def __str__(self) -> str:
        return f"{self.id}: {self.msg} HINT: {self.hint}"


# eq=False: specs compare and hash by identity. Their args may hold lists,
# and they are sent as signal senders, which must be hashable.
@dataclass(frozen=True, eq=False)
class FunctionSpec:
    """One validated entry of ``DUMBWAITER_FUNCTION_LIST``."""

    name: str
    function: Callable[..., Any]
    path: str
    schedule: Schedule
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    saved: int = conf.DEFAULT_SAVED
    timeout: float | None = None
    retry_after: float | None = None

    def call(self) -> Any:
        return self.function(*self.args, **self.kwargs)


@dataclass(frozen=True)
class Registry:
    """Every valid spec by name, plus every problem found on the way."""

    specs: Mapping[str, FunctionSpec]
    problems: tuple[Problem, ...]
    # Names whose entries had problems: asking for one is a configuration
    # error, not an unknown name.
    broken_names: frozenset[str] = frozenset()
    # The list, or an entry of it, is broken before any name could be read:
    # an unknown name might be one of those.
    has_unnamed_problems: bool = False

    def get(self, name: str) -> FunctionSpec:
        try:
            return self.specs[name]
        except KeyError:
            if name in self.broken_names:
                raise ConfigurationError(
                    f"Function {name!r} is misconfigured; run "
                    "'manage.py check' for details."
                ) from None
            if self.has_unnamed_problems:
                raise ConfigurationError(
                    f"{name!r} is not a known function, and DUMBWAITER_FUNCTION_"
                    "LIST has entries without a usable name; run 'manage.py "
                    "check' for details."
                ) from None
            raise UnknownFunction(name, sorted(self.specs)) from None

    def raise_for_problems(self) -> None:
        if self.problems:
            raise ConfigurationError("\n".join(str(p) for p in self.problems))


# Seconds and counts beyond these are mistakes, and would overflow datetime
# arithmetic deep in a tick instead of failing here.
MAX_SECONDS = 10 * 366 * 24 * 3600
MAX_SAVED = 1_000_000
MAX_STALE_AFTER = 1000


def _is_number(value: object) -> bool:
    """A finite number of seconds, at most ten years."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= MAX_SECONDS
    )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Validator:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, id: str, msg: str, hint: str) -> None:
        self.problems.append(Problem(f"dumbwaiter.{id}", msg, hint))

    def defaults(self) -> tuple[float, int]:
        frequency = conf.default_frequency()
        if not _is_number(frequency) or frequency <= 0:
            self.add(
                "E010",
                f"DUMBWAITER_DEFAULT_FREQUENCY must be a positive number of "
                f"seconds, not {frequency!r}.",
                "Set it to the seconds between runs, for example 300.",
            )
            frequency = conf.DEFAULT_FREQUENCY
        saved = conf.default_saved()
        if not _is_count(saved) or saved < 1:
            self.add(
                "E011",
                f"DUMBWAITER_DEFAULT_SAVED must be a whole number of at least 1, "
                f"not {saved!r}.",
                "Set it to how many past results to keep, for example 10.",
            )
            saved = conf.DEFAULT_SAVED
        return float(frequency), int(saved)

    def settings(self) -> None:
        workers = conf.max_workers()
        if not _is_count(workers) or workers < 1:
            self.add(
                "E016",
                f"DUMBWAITER_MAX_WORKERS must be a whole number of at least 1, "
                f"not {workers!r}.",
                "Set it to how many functions a tick may run at once, e.g. 8.",
            )
        lease = conf.lease()
        if not _is_number(lease) or lease < 1:
            self.add(
                "E017",
                f"DUMBWAITER_LEASE must be a number of seconds of at least 1, "
                f"not {lease!r}.",
                "Set it to how long a dead host may keep a function blocked, "
                "for example 60.",
            )
        stale_after = conf.stale_after()
        if not _is_number(stale_after) or not 1 <= stale_after <= MAX_STALE_AFTER:
            self.add(
                "E025",
                f"DUMBWAITER_STALE_AFTER must be a number from 1 to "
                f"{MAX_STALE_AFTER}, "
                f"not {stale_after!r}.",
                "Give how many periods old a value may be before "
                "'dumbwaiter_status --check' reports it, for example 2.",
            )
        self.storage()
        threaded = conf.raw_threaded()
        if not isinstance(threaded, bool):
            self.add(
                "E027",
                f"DUMBWAITER_THREADED must be True or False, not {threaded!r}.",
                "Write True or False, without quotes.",
            )
        lock_dir = conf.configured_lock_dir()
        if lock_dir is not None and not isinstance(lock_dir, str | os.PathLike):
            self.add(
                "E018",
                f"DUMBWAITER_LOCK_DIR must be a path, not {type(lock_dir).__name__}.",
                "Give a directory on a local filesystem, or remove the setting to "
                "use one in the system temp directory.",
            )
        import pickle

        protocol = conf.pickle_protocol()
        if not _is_count(protocol) or not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
            self.add(
                "E015",
                f"DUMBWAITER_PICKLE_PROTOCOL must be a whole number from 0 to "
                f"{pickle.HIGHEST_PROTOCOL}, not {protocol!r}.",
                "Remove the setting to use pickle.DEFAULT_PROTOCOL.",
            )
        self.serializer()

    def storage(self) -> None:
        from django.conf import settings

        storage = conf.storage()
        if storage == "database":
            return
        alias = storage.removeprefix("cache:") if isinstance(storage, str) else None
        if not (isinstance(storage, str) and storage.startswith("cache:") and alias):
            self.add(
                "E026",
                f"DUMBWAITER_STORAGE must be 'database' or 'cache:<alias>', "
                f"not {storage!r}.",
                "Use 'database' (the default, with history) or, for example, "
                "'cache:default'.",
            )
        elif alias not in getattr(settings, "CACHES", {}):
            self.add(
                "E026",
                f"DUMBWAITER_STORAGE names the cache {alias!r}, which is not in "
                "CACHES.",
                f"Add a {alias!r} entry to CACHES, or name one of: "
                f"{', '.join(sorted(getattr(settings, 'CACHES', {}))) or 'none'}.",
            )

    def serializer(self) -> None:
        path = conf.serializer_path()
        if not isinstance(path, str) or not path:
            self.add(
                "E014",
                f"DUMBWAITER_SERIALIZER must be a dotted module path, not {path!r}.",
                "Use 'dumbwaiter.serializers.pickler' or "
                "'dumbwaiter.serializers.json'.",
            )
            return
        try:
            module = importlib.import_module(path)
        except Exception as exc:  # any error while importing, not only ImportError
            self.add(
                "E014",
                f"DUMBWAITER_SERIALIZER {path!r} could not be imported: "
                f"{type(exc).__name__}: {exc}.",
                "Give the dotted path of a module, such as "
                "'dumbwaiter.serializers.pickler'.",
            )
            return
        serializer = getattr(module, "serializer", None)
        if not (
            callable(getattr(serializer, "serialize", None))
            and callable(getattr(serializer, "deserialize", None))
        ):
            self.add(
                "E014",
                f"DUMBWAITER_SERIALIZER module {path!r} has no object named "
                f"'serializer' with serialize() and deserialize() methods.",
                "Define `serializer` in that module, or point the setting at "
                "'dumbwaiter.serializers.pickler'.",
            )

    def entries(self, raw: Any) -> tuple[dict[str, FunctionSpec], set[str]]:
        specs: dict[str, FunctionSpec] = {}
        broken: set[str] = set()
        if not isinstance(raw, list | tuple):
            self.add(
                "E001",
                f"DUMBWAITER_FUNCTION_LIST must be a list of dicts, not "
                f"{type(raw).__name__}.",
                "Write it as [{'function': 'app.module.func', 'name': 'name'}, ...].",
            )
            return specs, broken
        frequency, saved = self.defaults()
        seen: set[str] = set()
        for index, entry in enumerate(raw):
            before = len(self.problems)
            spec = self.entry(index, entry, frequency, saved, seen)
            if spec is not None and len(self.problems) == before:
                specs[spec.name] = spec
            elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
                broken.add(entry["name"])
        return specs, broken

    def entry(
        self,
        index: int,
        entry: Any,
        default_frequency: float,
        default_saved: int,
        seen: set[str],
    ) -> FunctionSpec | None:
        where = f"DUMBWAITER_FUNCTION_LIST[{index}]"
        if not isinstance(entry, dict):
            self.add(
                "E002",
                f"{where} must be a dict, not {type(entry).__name__}.",
                "Each entry is a dict with at least 'function' and 'name'.",
            )
            return None

        name = entry.get("name")
        if isinstance(name, str) and name:
            where = f"{where} ({name!r})"

        for key in sorted(set(entry) - KNOWN_KEYS, key=str):
            close = difflib.get_close_matches(str(key), sorted(KNOWN_KEYS), n=1)
            hint = (
                f"Did you mean {close[0]!r}?"
                if close
                else f"Known keys: {', '.join(sorted(KNOWN_KEYS))}."
            )
            self.add("E003", f"{where} has an unknown key {key!r}.", hint)

        if "name" not in entry or not isinstance(name, str) or not name.strip():
            self.add(
                "E004",
                f"{where} needs a 'name': a non-empty string.",
                "Add a unique 'name'; views read the value by it.",
            )
            name = None
        elif name in seen:
            self.add(
                "E005",
                f"{where}: the name {name!r} is used by more than one entry.",
                "Give every entry its own name.",
            )
        elif len(name) > MAX_NAME_LENGTH:
            self.add(
                "E006",
                f"{where}: the name is {len(name)} characters long; at most "
                f"{MAX_NAME_LENGTH} fit the database index.",
                "Choose a shorter name. Names are never truncated, since two "
                "long names could collide.",
            )
        if isinstance(name, str):
            seen.add(name)

        function = self.function(where, entry)

        schedule = self.schedule(where, entry, default_frequency)

        saved = entry.get("saved", default_saved)
        if not _is_count(saved) or not 1 <= saved <= MAX_SAVED:
            self.add(
                "E011",
                f"{where}: 'saved' must be a whole number of at least 1 "
                f"(and at most {MAX_SAVED}), "
                f"not {saved!r}.",
                "Give how many past results to keep, for example 10.",
            )

        args = entry.get("args", ())
        if not isinstance(args, list | tuple):
            self.add(
                "E012",
                f"{where}: 'args' must be a list or tuple, not {type(args).__name__}.",
                "Wrap a single argument in a list: 'args': [value].",
            )

        kwargs = entry.get("kwargs", {})
        if not isinstance(kwargs, dict):
            self.add(
                "E013",
                f"{where}: 'kwargs' must be a dict, not {type(kwargs).__name__}.",
                "Write keyword arguments as {'name': value}.",
            )

        optional_seconds: dict[str, float | None] = {}
        for key, id, meaning in (
            ("timeout", "E023", "the longest a run may take"),
            ("retry_after", "E024", "how soon a failed run is tried again"),
        ):
            seconds = entry.get(key)
            if seconds is not None and (not _is_number(seconds) or seconds <= 0):
                self.add(
                    id,
                    f"{where}: {key!r} must be a positive number of seconds, "
                    f"not {seconds!r}.",
                    f"Give {meaning} in seconds, or leave it out.",
                )
            optional_seconds[key] = None if seconds is None else float(seconds)

        if name is None or function is None or schedule is None:
            return None
        try:
            return FunctionSpec(
                name=name,
                function=function[0],
                path=function[1],
                schedule=schedule,
                args=tuple(args),
                kwargs=MappingProxyType(dict(kwargs)),
                saved=int(saved),
                timeout=optional_seconds["timeout"],
                retry_after=optional_seconds["retry_after"],
            )
        except (TypeError, ValueError):
            # Only reachable with values already reported above.
            return None

    def schedule(
        self, where: str, entry: dict[str, Any], default_frequency: float
    ) -> Schedule | None:
        if "schedule" in entry:
            return self.cron(where, entry)
        if "timezone" in entry:
            self.add(
                "E022",
                f"{where}: 'timezone' only applies to a cron 'schedule'.",
                "Remove 'timezone', or replace 'frequency' with a 'schedule'.",
            )
        frequency = entry.get("frequency", default_frequency)
        if not _is_number(frequency) or frequency <= 0:
            self.add(
                "E010",
                f"{where}: 'frequency' must be a positive number of seconds, "
                f"not {frequency!r}.",
                "Give the seconds between runs, for example 60.",
            )
            return None
        return Frequency(float(frequency))

    def cron(self, where: str, entry: dict[str, Any]) -> Cron | None:
        if "frequency" in entry:
            self.add(
                "E019",
                f"{where} gives both 'frequency' and 'schedule'.",
                "Keep one: 'frequency' in seconds, or 'schedule' as a cron expression.",
            )
        from croniter import croniter  # only projects with cron entries pay for it

        expression = entry["schedule"]
        fields = expression.split() if isinstance(expression, str) else []
        macro = len(fields) == 1 and fields[0].startswith("@")
        if not (macro or len(fields) in (5, 6)) or not croniter.is_valid(
            " ".join(fields)
        ):
            self.add(
                "E020",
                f"{where}: 'schedule' {expression!r} is not a valid cron expression.",
                "Use five fields (minute hour day month weekday), or six with "
                "seconds last: '*/15 * * * *', '0 6 * * 1-5', '* * * * * */10'.",
            )
            return None
        zone = entry.get("timezone", conf.time_zone())
        try:
            if not isinstance(zone, str) or not zone:
                raise ValueError(zone)
            ZoneInfo(zone)
        except (ValueError, ZoneInfoNotFoundError):
            self.add(
                "E021",
                f"{where}: 'timezone' {zone!r} is not a known time zone.",
                "Use an IANA name such as 'Europe/Berlin' or 'UTC'.",
            )
            return None
        schedule = Cron(" ".join(fields), zone)
        try:
            # croniter checks syntax only; "0 0 30 2 *" (February 30) parses
            # but never fires, and would fail in every tick instead.
            schedule.next_after(datetime.now(UTC))
        except Exception as exc:
            self.add(
                "E020",
                f"{where}: 'schedule' {expression!r} never fires ({exc}).",
                "Check the day and month fields name a date that exists.",
            )
            return None
        return schedule

    def function(
        self, where: str, entry: dict[str, Any]
    ) -> tuple[Callable[..., Any], str] | None:
        if "function" not in entry:
            self.add(
                "E007",
                f"{where} needs a 'function': a callable or a dotted path to one.",
                "Add 'function': 'myapp.reports.compute_totals'.",
            )
            return None
        target = entry["function"]
        if isinstance(target, str):
            path = target
            try:
                target = import_string(path)
            except Exception as exc:  # any error while importing, not only ImportError
                self.add(
                    "E008",
                    f"{where}: the function {path!r} could not be imported: "
                    f"{type(exc).__name__}: {exc}",
                    "Check the dotted path: 'package.module.function_name'.",
                )
                return None
        else:
            module = getattr(target, "__module__", None) or "?"
            qualname = getattr(target, "__qualname__", None) or repr(target)
            path = f"{module}.{qualname}"
        if not callable(target):
            self.add(
                "E009",
                f"{where}: {path!r} is not callable.",
                "Point 'function' at a function or other callable.",
            )
            return None
        return target, path


def validate() -> Registry:
    """Validate the settings now, uncached."""
    validator = _Validator()
    validator.settings()
    specs, broken = validator.entries(conf.function_list())
    return Registry(
        specs=MappingProxyType(specs),
        problems=tuple(validator.problems),
        broken_names=frozenset(broken),
        has_unnamed_problems=any(
            p.id in {"dumbwaiter.E001", "dumbwaiter.E002", "dumbwaiter.E004"}
            for p in validator.problems
        ),
    )


_cache: Registry | None = None
_cache_lock = threading.Lock()


def registry() -> Registry:
    """The validated settings, computed once per process."""
    global _cache
    cached = _cache
    if cached is None:
        with _cache_lock:
            if _cache is None:
                _cache = validate()
            cached = _cache
    return cached


@receiver(setting_changed)
def _forget_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    global _cache
    # TIME_ZONE is the default zone of cron entries.
    if setting.startswith("DUMBWAITER_") or setting in {"TIME_ZONE", "CACHES"}:
        _cache = None
