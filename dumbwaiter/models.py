"""The state row per function and the history of its values.

Every statement the tick issues is a QuerySet method here, named for what it
does, so the tick reads as steps and each step's SQL can be tested alone.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, models, router
from django.db.models import F

from dumbwaiter.specs import MAX_NAME_LENGTH


class Status(models.TextChoices):
    NEVER_RUN = "never", "never run"
    RUNNING = "running", "running"
    SUCCEEDED = "ok", "succeeded"
    FAILED = "failed", "failed"
    TIMED_OUT = "timeout", "timed out"


class FunctionStateQuerySet(models.QuerySet["FunctionState"]):
    def plan_rows(self) -> list[tuple[Any, ...]]:
        """What the planner needs of every function, in one query."""
        return list(
            self.values_list(
                "name",
                "version",
                "next_due",
                "lease_expires",
                "lease_token",
                "claimed_by_lock_scope",
                "error_class",
                "error_at",
                "last_finished",
            )
        )

    def add_missing(self, names: Iterable[str]) -> None:
        """Create state rows for functions seen for the first time."""
        self.bulk_create(
            [FunctionState(name=name) for name in names], ignore_conflicts=True
        )

    def claim(
        self,
        name: str,
        version: int,
        *,
        token: str,
        now: datetime,
        lease_expires: datetime,
        next_due: datetime,
        claimed_by: str,
        lock_scope: str,
        previous_token: str | None,
        abandoned: dict[str, Any] | None = None,
    ) -> bool:
        """Take the function's current due period; True when this caller won.

        The WHERE clause requires the row to be exactly as the planner saw it
        (same version, same holder), so of any number of ticks on any number
        of hosts that race for one period, one UPDATE changes a row and the
        rest change nothing. ``abandoned`` carries the error fields written
        when the row is taken over from a run that died.
        """
        updates: dict[str, Any] = {
            "version": F("version") + 1,
            "status": Status.RUNNING,
            "lease_token": token,
            "lease_expires": lease_expires,
            "next_due": next_due,
            "last_started": now,
            "claimed_by": claimed_by[:255],
            "claimed_by_lock_scope": lock_scope,
        }
        if abandoned:
            updates.update(abandoned)
        return bool(
            self.filter(name=name, version=version, lease_token=previous_token).update(
                **updates
            )
        )

    def park(
        self,
        name: str,
        version: int,
        *,
        previous_token: str | None,
        next_due: datetime | None,
        now: datetime | None,
    ) -> bool:
        """Record a second abandoned run in a row; leave the row to its slot.

        Conditional like :meth:`claim`, so only one tick parks it.
        """
        return bool(
            self.filter(name=name, version=version, lease_token=previous_token).update(
                version=F("version") + 1,
                status=Status.FAILED,
                lease_token=None,
                lease_expires=None,
                next_due=next_due,
                error_at=now,
                error_message=(
                    "Its tick died during this run and during the retry before "
                    "it (os._exit, a crash or a kill?); it waits for its next slot."
                ),
            )
        )

    def renew(self, tokens: Iterable[str], lease_expires: datetime) -> int:
        """Push the lease of runs still in progress further out."""
        tokens = list(tokens)
        if not tokens:
            return 0
        return self.filter(lease_token__in=tokens).update(lease_expires=lease_expires)

    def claim_many(self, claims: Sequence[dict[str, Any]]) -> set[str]:
        """Claim many functions in one batch; the names this caller won.

        Each claim is the conditional UPDATE of :meth:`claim` for a row
        nobody holds (``name``, ``version``, ``token``, ``lease_expires``,
        ``next_due``, ``now``, ``claimed_by``, ``lock_scope``). The batch's row
        count says whether every claim won; only if not are the winners read
        back, by their tokens, which no other tick can hold.
        """
        if not claims:
            return set()
        connection = connections[router.db_for_write(FunctionState)]
        quote = connection.ops.quote_name
        table = quote(FunctionState._meta.db_table)
        columns = (
            "status",
            "lease_token",
            "lease_expires",
            "next_due",
            "last_started",
            "claimed_by",
            "claimed_by_lock_scope",
        )
        assignments = ", ".join(f"{quote(c)} = %s" for c in columns)
        sql = (
            f"UPDATE {table} SET {quote('version')} = {quote('version')} + 1, "
            f"{assignments} WHERE {quote('name')} = %s AND {quote('version')} = %s "
            f"AND {quote('lease_token')} IS NULL"
        )
        # One tick claims everything with the same lease and start time, and
        # mostly the same next slot: adapt each distinct time once.
        adapt = functools.lru_cache(maxsize=None)(
            connection.ops.adapt_datetimefield_value
        )
        params = [
            (
                Status.RUNNING,
                c["token"],
                adapt(c["lease_expires"]),
                adapt(c["next_due"]),
                adapt(c["now"]),
                c["claimed_by"][:255],
                c["lock_scope"],
                c["name"],
                c["version"],
            )
            for c in claims
        ]
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
            if cursor.rowcount == len(claims):
                return {c["name"] for c in claims}
        tokens = [c["token"] for c in claims]
        won: set[str] = set()
        for start in range(0, len(tokens), 500):
            won.update(
                self.filter(lease_token__in=tokens[start : start + 500]).values_list(
                    "name", flat=True
                )
            )
        return won

    def record_values(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Store many successful outcomes; the names whose claim still held.

        Each row is the conditional UPDATE of :meth:`record` (``name``,
        ``token``, ``version`` as the claim left it, ``payload``,
        ``computed_at``, ``finished``, ``duration``, ``next_due``), sent as
        one batch.
        """
        if not rows:
            return set()
        connection = connections[router.db_for_write(FunctionState)]
        quote = connection.ops.quote_name
        columns = (
            "status",
            "value",
            "value_computed_at",
            "last_finished",
            "duration",
            "next_due",
        )
        assignments = ", ".join(f"{quote(c)} = %s" for c in columns)
        sql = (
            f"UPDATE {quote(FunctionState._meta.db_table)} SET {assignments}, "
            f"{quote('lease_token')} = NULL, {quote('lease_expires')} = NULL "
            f"WHERE {quote('name')} = %s AND {quote('lease_token')} = %s"
        )
        adapt = connection.ops.adapt_datetimefield_value
        binary = connection.Database.Binary
        params = [
            (
                Status.SUCCEEDED,
                binary(r["payload"]),
                adapt(r["computed_at"]),
                adapt(r["finished"]),
                r["duration"],
                adapt(r["next_due"]),
                r["name"],
                r["token"],
            )
            for r in rows
        ]
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
            if cursor.rowcount == len(params):
                return {r["name"] for r in rows}
        # Some claim was taken over. A claim bumps the version and a record
        # does not, so a row still at the version this caller's claim gave
        # it, and held by nobody, is one whose UPDATE matched.
        now_held = {
            name: (version, token)
            for name, version, token in self.filter(
                name__in=[r["name"] for r in rows]
            ).values_list("name", "version", "lease_token")
        }
        return {
            r["name"] for r in rows if now_held.get(r["name"]) == (r["version"], None)
        }

    def record(
        self, name: str, token: str, *, keep_claim: bool = False, **fields: Any
    ) -> bool:
        """Store a run's outcome unless another tick has taken the row over.

        ``keep_claim`` leaves the lease in place: a timed-out function may
        still be running, and nobody else may start it until it is gone.
        """
        if not keep_claim:
            fields.update(lease_token=None, lease_expires=None)
        return bool(self.filter(name=name, lease_token=token).update(**fields))

    def release(self, tokens: Iterable[str]) -> int:
        """Drop claims kept by :meth:`record` with ``keep_claim``."""
        tokens = list(tokens)
        if not tokens:
            return 0
        return self.filter(lease_token__in=tokens).update(
            lease_token=None, lease_expires=None
        )

    def newest_payload(
        self, name: str, computed_since: datetime | None = None
    ) -> bytes | None:
        """The stored value's bytes: one SELECT of one column by unique name.

        This is the read path of every view that shows a value, so the SQL is
        written out once rather than compiled by the ORM on each call, which
        cost several times the query itself (see bench/).
        """
        connection = connections[router.db_for_read(FunctionState, hints={})]
        sql, extra = _newest_payload_sql(connection.vendor, connection.alias)
        params: list[Any] = [name]
        if computed_since is not None:
            sql = extra
            params.append(connection.ops.adapt_datetimefield_value(computed_since))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None or row[0] is None:
            return None
        return bytes(row[0])


@functools.lru_cache(maxsize=16)
def _newest_payload_sql(vendor: str, alias: str) -> tuple[str, str]:
    """The read path's SQL for one connection, without and with a time bound."""
    quote = connections[alias].ops.quote_name
    table = quote(FunctionState._meta.db_table)
    base = f"SELECT {quote('value')} FROM {table} WHERE {quote('name')} = %s"
    return base, f"{base} AND {quote('value_computed_at')} >= %s"


class FunctionState(models.Model):
    """Where one configured function stands: its schedule, claim and value."""

    name = models.CharField(max_length=MAX_NAME_LENGTH, unique=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.NEVER_RUN
    )
    next_due = models.DateTimeField(
        null=True, blank=True, help_text="Empty until the first run: due at once."
    )
    last_started = models.DateTimeField(null=True, blank=True)
    last_finished = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(
        null=True, blank=True, help_text="Seconds the last run took."
    )
    value = models.BinaryField(
        null=True, blank=True, help_text="Serialized newest value."
    )
    value_computed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the run that produced the value began."
    )
    error_class = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")
    error_at = models.DateTimeField(null=True, blank=True)
    # Bumped by every claim; a claim names the version it saw, so a stale
    # plan can never claim a period that has moved on.
    version = models.BigIntegerField(default=0)
    # NULL, not "", marks a row nobody holds: the claim matches it with IS NULL.
    lease_token = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    lease_expires = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(
        max_length=255, blank=True, default="", help_text="host and pid of the claim"
    )
    # Which lock directory on which host guarded the claim. A tick that shares
    # it, and can take the file lock, knows the claimant is dead.
    claimed_by_lock_scope = models.CharField(max_length=64, blank=True, default="")

    objects = FunctionStateQuerySet.as_manager()

    class Meta:
        verbose_name = "function"
        permissions = [("run_function", "Can run a function now from the admin")]

    def __str__(self) -> str:
        return self.name


class HistoryQuerySet(models.QuerySet["HistoryEntry"]):
    def for_function(self, name: str) -> HistoryQuerySet:
        return self.filter(name=name).order_by("-id")

    def trim(self, name: str, keep: int) -> int:
        """Delete all but the newest ``keep`` rows of one function."""
        return self.trim_many([(name, keep)])

    def trim_many(self, functions: Sequence[tuple[str, int]]) -> int:
        """Delete all but the newest ``keep`` rows of each (name, keep).

        For every group of up to 500 functions that keep the same depth, one
        SELECT numbers each function's rows newest first with a window
        function over the (name, id) index and returns the ids past ``keep``,
        and one DELETE removes them by primary key. (A single DELETE with
        that SELECT as its subquery let PostgreSQL scan the whole table.)
        """
        by_depth: dict[int, list[str]] = {}
        for name, keep in functions:
            by_depth.setdefault(keep, []).append(name)
        connection = connections[router.db_for_write(HistoryEntry)]
        quote = connection.ops.quote_name
        table = quote(HistoryEntry._meta.db_table)
        deleted = 0
        with connection.cursor() as cursor:
            for keep, names in by_depth.items():
                for start in range(0, len(names), 500):
                    chunk = names[start : start + 500]
                    marks = ", ".join(["%s"] * len(chunk))
                    cursor.execute(
                        f"SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
                        f"(PARTITION BY name ORDER BY id DESC) AS position "
                        f"FROM {table} WHERE name IN ({marks})) ranked "
                        f"WHERE position > %s",
                        [*chunk, keep],
                    )
                    ids = [row[0] for row in cursor.fetchall()]
                    if ids:
                        marks = ", ".join(["%s"] * len(ids))
                        cursor.execute(
                            f"DELETE FROM {table} WHERE id IN ({marks})", ids
                        )
                        deleted += cursor.rowcount
        return deleted

    def add_many(self, rows: Sequence[tuple[str, bytes, datetime, float]]) -> None:
        """Insert (name, payload, computed_at, duration) rows in one batch."""
        if not rows:
            return
        connection = connections[router.db_for_write(HistoryEntry)]
        quote = connection.ops.quote_name
        sql = (
            f"INSERT INTO {quote(HistoryEntry._meta.db_table)} "
            f"({quote('name')}, {quote('value')}, {quote('computed_at')}, "
            f"{quote('duration')}) VALUES (%s, %s, %s, %s)"
        )
        binary = connection.Database.Binary
        adapt = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            cursor.executemany(
                sql,
                [(n, binary(v), adapt(at), d) for n, v, at, d in rows],
            )


class HistoryEntry(models.Model):
    """One past value of a function, kept up to the function's ``saved``."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=MAX_NAME_LENGTH)
    value = models.BinaryField()
    computed_at = models.DateTimeField()
    duration = models.FloatField(null=True, blank=True)

    objects = HistoryQuerySet.as_manager()

    class Meta:
        verbose_name = "history entry"
        verbose_name_plural = "history"
        indexes = [
            # Serves get_history (newest first) and the trim, which both
            # filter by name and walk ids downwards.
            models.Index(fields=["name", "id"], name="dumbwaiter_history_name_id"),
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.computed_at:%Y-%m-%d %H:%M:%S}"
