"""The state row per function and the history of its values.

Every statement the tick issues is a QuerySet method here, named for what it
does, so the tick reads as steps and each step's SQL can be tested alone.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
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

    def renew(self, tokens: Iterable[str], lease_expires: datetime) -> int:
        """Push the lease of runs still in progress further out."""
        tokens = list(tokens)
        if not tokens:
            return 0
        return self.filter(lease_token__in=tokens).update(lease_expires=lease_expires)

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
        """Delete all but the newest ``keep`` rows of one function.

        One DELETE on the (name, id) index. The cut-off id is selected through
        a derived table because MySQL refuses a DELETE whose subquery reads
        the table being deleted from, and materializes a derived table first.
        """
        table = connections[router.db_for_write(HistoryEntry)].ops.quote_name(
            HistoryEntry._meta.db_table
        )
        sql = (
            f"DELETE FROM {table} WHERE name = %s AND id <= ("
            f"SELECT cutoff.id FROM (SELECT id FROM {table} WHERE name = %s "
            f"ORDER BY id DESC LIMIT 1 OFFSET %s) cutoff)"
        )
        connection = connections[router.db_for_write(HistoryEntry)]
        with connection.cursor() as cursor:
            cursor.execute(sql, [name, name, keep])
            return cursor.rowcount


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
