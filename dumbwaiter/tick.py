"""One tick: plan, lock, claim, execute, record.

Each step is its own method so that other executors and other claim rules
can replace one step without touching the rest. The commands are thin
wrappers around :class:`Tick`; tests drive it directly with a fake clock.

Threads: user functions run in worker threads (one worker when
``DUMBWAITER_THREADED`` is off). Everything that touches dumbwaiter's own
tables happens on the calling thread, so SQLite never sees two writers from
one tick, and outcomes that finish together are recorded in one transaction.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    router,
    transaction,
)

from dumbwaiter import clock, conf, signals, specs
from dumbwaiter.exceptions import FunctionTimeout, RunAbandoned
from dumbwaiter.locks import FunctionLock, lock_scope
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.serializers import get_serializer
from dumbwaiter.specs import FunctionSpec, Registry
from dumbwaiter.storage import get_storage, seal

logger = logging.getLogger("dumbwaiter.tick")

_ABANDONED = "dumbwaiter.exceptions.RunAbandoned"

T = TypeVar("T")


@dataclass
class PlannedRun:
    """A function the planner found due, with the row version it saw."""

    spec: FunctionSpec
    version: int
    slot: datetime
    previous_token: str | None = None
    # Set when the row is held by a run that is presumed dead.
    abandoned_by: str | None = None
    # True when only a free file lock proves the holder dead (same host).
    needs_free_lock: bool = False
    # Abandoned twice in a row: record the failure, run at the next slot.
    park: bool = False


@dataclass
class ClaimedRun:
    planned: PlannedRun
    token: str
    lock: FunctionLock
    started: datetime


@dataclass
class Outcome:
    """What running a function produced; built on the worker thread."""

    started: datetime
    finished: datetime
    payload: bytes | None = None
    value: Any = None
    error: BaseException | None = None
    error_traceback: str = ""
    timed_out: bool = False

    @property
    def duration(self) -> float:
        return (self.finished - self.started).total_seconds()


@dataclass
class Plan:
    due: list[PlannedRun] = field(default_factory=list)
    # Held by a live claim of another host (name -> when its lease ends).
    running_elsewhere: dict[str, datetime | None] = field(default_factory=dict)
    # name -> when it is next due.
    not_due: dict[str, datetime | None] = field(default_factory=dict)


@dataclass
class TickReport:
    """What one tick did; the command turns it into output and an exit code."""

    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # Held by another tick's file lock on this host: being computed now.
    locked: list[str] = field(default_factory=list)
    # Another tick won the database claim between plan and claim.
    lost_claim: list[str] = field(default_factory=list)
    # Finished, but the claim had been taken over; the result was dropped.
    discarded: list[str] = field(default_factory=list)
    running_elsewhere: list[str] = field(default_factory=list)
    # Also in ``failed``: given up on after the entry's ``timeout``.
    timed_out: list[str] = field(default_factory=list)
    not_due: int = 0

    @property
    def ran(self) -> list[str]:
        return self.succeeded + self.failed


def _error_class(error: BaseException) -> str:
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _describe(error: BaseException) -> str:
    """``str(error)``, or a stand-in when the exception cannot even say that."""
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__} whose message could not be read>"


def _storable_text(text: str, limit: int = 100_000) -> str:
    """Text every database accepts: no NUL (PostgreSQL refuses it), no lone
    surrogates (they cannot be encoded), and not unboundedly long."""
    text = text.replace("\x00", "\\x00")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "\n[cut]"


def _invoke(spec: FunctionSpec, now: Callable[[], datetime]) -> Outcome:
    """Run one function on a worker thread and serialize what it returns.

    BaseException is caught too: a function calling sys.exit() must count as
    a failed run, not kill the worker silently and leave the tick waiting.
    """
    started = now()
    try:
        value = spec.call()
        payload = seal(spec.name, get_serializer().serialize(value))
    except BaseException as exc:
        return Outcome(
            started=started,
            finished=now(),
            error=exc,
            error_traceback=traceback.format_exc(),
        )
    finally:
        # A worker thread opens its own connections if the function queries
        # the database; they would otherwise stay open until the process ends.
        connections.close_all()
    return Outcome(started=started, finished=now(), payload=payload, value=value)


def _worker(
    todo: queue.SimpleQueue[ClaimedRun | None],
    started: dict[str, float],
    outcomes: queue.SimpleQueue[tuple[ClaimedRun, Outcome]],
    now: Callable[[], datetime],
) -> None:
    """Run claimed functions one after another until told to stop (None).

    A worker is a daemon thread: one stuck in a function that never returns
    cannot keep the process alive once the tick is done with it.
    """
    while (run := todo.get()) is not None:
        started[run.token] = time.monotonic()
        run.lock.mark_started(run.token)
        outcomes.put((run, _invoke(run.planned.spec, now)))


def _drain(
    outcomes: queue.SimpleQueue[tuple[ClaimedRun, Outcome]], timeout: float
) -> list[tuple[ClaimedRun, Outcome]]:
    """Wait up to ``timeout`` for one outcome, then take all that are ready."""
    try:
        batch = [outcomes.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            batch.append(outcomes.get_nowait())
        except queue.Empty:
            return batch


def _timed_out(run: ClaimedRun, now: Callable[[], datetime]) -> Outcome:
    spec = run.planned.spec
    error = FunctionTimeout(
        f"{spec.name!r} was still running after its timeout of {spec.timeout:g}s"
    )
    return Outcome(started=run.started, finished=now(), error=error, timed_out=True)


class Tick:
    """Runs every due function once; call :meth:`run`."""

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        threaded: bool | None = None,
        lock_dir: str | None = None,
        now: Callable[[], datetime] = clock.now,
        only: list[str] | None = None,
        force: bool = False,
    ) -> None:
        self.registry = registry if registry is not None else specs.registry()
        self.threaded = conf.threaded() if threaded is None else threaded
        self.lock_dir = lock_dir or conf.lock_dir()
        self.lock_scope = lock_scope(self.lock_dir)
        self.now = now
        self.lease = timedelta(seconds=float(conf.lease()))
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.db_alias = router.db_for_write(FunctionState)
        self.storage = get_storage()
        self.only = only
        # Run every planned function now, whatever its schedule (dumbwaiter_run).
        self.force = force
        # Worker threads given up on after a timeout; they may still run.
        self.hung_threads = 0

    # -- plan -------------------------------------------------------------

    def plan(self, now: datetime, *, write: bool = True) -> Plan:
        """Decide what is due from one read of every state row.

        ``write=False`` (a dry run) leaves rows of new functions uncreated.
        """
        specs_by_name = self.registry.specs
        if self.only is not None:
            specs_by_name = {n: specs_by_name[n] for n in self.only}
        rows = {row[0]: row for row in FunctionState.objects.plan_rows()}
        missing = [name for name in specs_by_name if name not in rows]
        if missing and write:
            FunctionState.objects.add_missing(missing)

        plan = Plan()
        for name in sorted(specs_by_name):
            spec = specs_by_name[name]
            row = rows.get(name)
            if row is None:
                plan.due.append(PlannedRun(spec, 0, spec.schedule.slot_for(now)))
                continue
            (_, version, next_due, lease_expires, token, scope) = row[:6]
            error_class, error_at, last_finished = row[6:]
            next_due = clock.from_db(next_due)
            lease_expires = clock.from_db(lease_expires)
            if token is not None:
                # A run taken over once that died again (os._exit, a segfault,
                # the OOM killer) would kill every tick that retries it at
                # once: it waits for its next slot instead.
                twice = error_class == _ABANDONED and (
                    last_finished is None
                    or (error_at is not None and error_at > last_finished)
                )
                if lease_expires is not None and lease_expires <= now:
                    plan.due.append(
                        PlannedRun(
                            spec,
                            version,
                            spec.schedule.slot_for(now),
                            previous_token=token,
                            abandoned_by=token,
                            park=twice,
                        )
                    )
                elif scope == self.lock_scope:
                    plan.due.append(
                        PlannedRun(
                            spec,
                            version,
                            spec.schedule.slot_for(now),
                            previous_token=token,
                            abandoned_by=token,
                            needs_free_lock=True,
                            park=twice,
                        )
                    )
                else:
                    plan.running_elsewhere[name] = lease_expires
                continue
            if spec.schedule.is_due(next_due, now):
                slot = next_due or spec.schedule.slot_for(now)
                plan.due.append(PlannedRun(spec, version, slot))
            elif self.force:
                plan.due.append(PlannedRun(spec, version, spec.schedule.slot_for(now)))
            else:
                plan.not_due[name] = next_due
        return plan

    # -- lock and claim -----------------------------------------------------

    def lock_and_claim(
        self, plan: Plan, report: TickReport, now: datetime
    ) -> list[ClaimedRun]:
        """Take the file lock, then the database claim, for each due function.

        The claim's WHERE clause is the dogpile re-check: it only matches if
        the row is still exactly as planned, so a tick that ran the function
        between our read and our lock makes the claim miss. All claims share
        one transaction, taken in name order so two ticks never deadlock.
        """
        locked: list[tuple[PlannedRun, FunctionLock]] = []
        for planned in plan.due:
            lock = FunctionLock(planned.spec.name, self.lock_dir)
            if lock.acquire():
                if (
                    planned.previous_token is not None
                    and planned.needs_free_lock
                    and lock.started_token() != planned.previous_token
                ):
                    # Claimed on this host, but its tick died before the run
                    # began (another function of that tick killed it): not an
                    # abandoned run, just one to start now.
                    planned = replace(planned, abandoned_by=None, park=False)
                locked.append((planned, lock))
            elif planned.needs_free_lock:
                # The holder on this host is alive and still running it.
                report.running_elsewhere.append(planned.spec.name)
            else:
                logger.info(
                    "skipped name=%s reason=locked: another tick on this host "
                    "is computing it",
                    planned.spec.name,
                )
                report.locked.append(planned.spec.name)
        if not locked:
            return []

        lease_expires = now + self.lease

        parked: list[str] = []

        def claim_all() -> list[ClaimedRun]:
            parked.clear()
            # Rows nobody holds are claimed in one batch; taking a row over
            # from a dead run also writes the abandoned run's error, one by one.
            plain = [(p, lock) for p, lock in locked if p.previous_token is None]
            tokens = {p.spec.name: secrets.token_hex(16) for p, _ in locked}
            won = FunctionState.objects.claim_many(
                [
                    {
                        "name": p.spec.name,
                        "version": p.version,
                        "token": tokens[p.spec.name],
                        "lease_expires": clock.to_db(lease_expires),
                        "next_due": clock.to_db(p.spec.schedule.next_due(p.slot, now)),
                        "now": clock.to_db(now),
                        "claimed_by": self.owner,
                        "lock_scope": self.lock_scope,
                    }
                    for p, _ in plain
                ]
            )
            for p, _ in locked:
                if p.park:
                    if self._park(p, now):
                        parked.append(p.spec.name)
                    continue
                if p.previous_token is not None and FunctionState.objects.claim(
                    p.spec.name,
                    p.version,
                    token=tokens[p.spec.name],
                    now=clock.to_db(now),
                    lease_expires=clock.to_db(lease_expires),
                    next_due=clock.to_db(p.spec.schedule.next_due(p.slot, now)),
                    claimed_by=self.owner,
                    lock_scope=self.lock_scope,
                    previous_token=p.previous_token,
                    abandoned=self._abandoned_fields(p, now),
                ):
                    won.add(p.spec.name)
            return [
                ClaimedRun(p, tokens[p.spec.name], lock, now)
                for p, lock in locked
                if p.spec.name in won
            ]

        try:
            claimed = self._atomic(claim_all)
        except BaseException:
            for _, lock in locked:
                lock.release()
            raise
        # Locks of functions whose claim was lost are not needed any more.
        won_names = {run.planned.spec.name for run in claimed}
        report.failed.extend(parked)
        for planned, lock in locked:
            if planned.spec.name not in won_names:
                lock.release()
                if planned.spec.name in parked:
                    continue
                logger.info(
                    "skipped name=%s reason=claimed: another tick ran it first",
                    planned.spec.name,
                )
                report.lost_claim.append(planned.spec.name)
        for run in claimed:
            if run.planned.abandoned_by:
                logger.warning(
                    "taking over name=%s: the run holding it did not finish "
                    "(its tick died or its lease expired); running it again",
                    run.planned.spec.name,
                )
        return claimed

    def _park(self, planned: PlannedRun, now: datetime) -> bool:
        """Record a second abandonment in a row and leave the run to its slot."""
        spec = planned.spec
        next_due = spec.schedule.next_due(now, now)
        if spec.retry_after:
            next_due = min(next_due, now + timedelta(seconds=spec.retry_after))
        parked = FunctionState.objects.park(
            spec.name,
            planned.version,
            previous_token=planned.previous_token,
            next_due=clock.to_db(next_due),
            now=clock.to_db(now),
        )
        if parked:
            logger.error(
                "abandoned twice name=%s: not retried at once; next run at %s",
                spec.name,
                next_due,
            )
        return bool(parked)

    def _abandoned_fields(
        self, planned: PlannedRun, now: datetime
    ) -> dict[str, Any] | None:
        if not planned.abandoned_by:
            return None
        return {
            "error_class": _error_class(RunAbandoned()),
            "error_message": (
                "The previous run never finished: its tick stopped before "
                "recording a result."
            ),
            "error_traceback": "",
            "error_at": clock.to_db(now),
        }

    # -- execute and record -------------------------------------------------

    def execute(self, claimed: list[ClaimedRun], report: TickReport) -> None:
        """Run claimed functions on worker threads, recording as they finish.

        A fixed set of workers (one when ``DUMBWAITER_THREADED`` is off)
        takes functions from a queue, so functions keep running while the
        calling thread records what has finished: it waits for outcomes,
        records all that have arrived in one batch, renews the leases of
        runs still going, and gives up on runs past their ``timeout``.

        A timed-out run is recorded at once, but keeps its claim, lease
        renewal and file lock until everything else is done, since its
        thread may still be running; a fresh worker takes its place. The
        claim is dropped at the very end, just before the process (which
        must then exit) ends the thread.
        """
        if not claimed:
            return
        workers = min(len(claimed), int(conf.max_workers())) if self.threaded else 1
        todo: queue.SimpleQueue[ClaimedRun | None] = queue.SimpleQueue()
        outcomes: queue.SimpleQueue[tuple[ClaimedRun, Outcome]] = queue.SimpleQueue()
        started: dict[str, float] = {}
        pending = {run.token: run for run in claimed}
        hung: list[ClaimedRun] = []
        renew_every = self.lease.total_seconds() / 3
        next_renewal = time.monotonic() + renew_every

        def start_worker() -> None:
            threading.Thread(
                target=_worker,
                args=(todo, started, outcomes, self.now),
                name="dumbwaiter-worker",
                daemon=True,
            ).start()

        for run in claimed:
            todo.put(run)
        for _ in range(workers):
            start_worker()
            todo.put(None)  # one stop mark per worker, after all the runs
        try:
            while pending:
                deadlines = [
                    started[token] + run.planned.spec.timeout
                    for token, run in pending.items()
                    if run.planned.spec.timeout and token in started
                ]
                wake = min([next_renewal, *deadlines])
                batch = _drain(outcomes, max(0.0, wake - time.monotonic()))
                # An outcome of a run already recorded as timed out is dropped.
                batch = [(r, o) for r, o in batch if pending.pop(r.token, None)]
                now = time.monotonic()
                for token, run in list(pending.items()):
                    timeout = run.planned.spec.timeout
                    if timeout and token in started and now >= started[token] + timeout:
                        del pending[token]
                        batch.append((run, _timed_out(run, self.now)))
                        hung.append(run)
                        self.hung_threads += 1
                        start_worker()  # takes the stuck worker's place
                        todo.put(None)
                if batch:
                    self.record(batch, report)
                if pending and time.monotonic() >= next_renewal:
                    self.renew([*pending.values(), *hung])
                    next_renewal = time.monotonic() + renew_every
            if hung:
                tokens = [run.token for run in hung]
                self._atomic(lambda: FunctionState.objects.release(tokens))
        finally:
            for run in claimed:
                run.lock.release()

    def renew(self, runs: list[ClaimedRun]) -> None:
        expires = clock.to_db(self.now() + self.lease)
        tokens = [r.token for r in runs]
        try:
            self._atomic(lambda: FunctionState.objects.renew(tokens, expires))
        except DatabaseError:
            # A missed renewal is not fatal; the lease only has to outlive
            # the next attempt, a third of a lease from now.
            logger.warning("lease renewal failed; will retry", exc_info=True)

    def record(
        self, finished: list[tuple[ClaimedRun, Outcome]], report: TickReport
    ) -> None:
        """Store the outcomes that finished together, in one transaction.

        If the batch cannot be written, each outcome is written alone, and
        one that still cannot be written (a value over MySQL's
        max_allowed_packet, say) is recorded as a failure with that error,
        so one bad outcome never costs the others their results.
        """
        try:
            results = self._atomic(lambda: self._record_batch(finished))
        except DatabaseError:
            if len(finished) == 1 and finished[0][1].error is not None:
                raise  # a bare failure record failed: the database is the problem
            logger.info("a batch of outcomes could not be written; writing each alone")
            results = [self._record_alone(run, outcome) for run, outcome in finished]
        for run, stored, outcome in results:
            name = run.planned.spec.name
            if not stored:
                logger.warning(
                    "discarded name=%s: another tick took the function over "
                    "while it ran; its newer result stands",
                    name,
                )
                report.discarded.append(name)
            elif outcome.timed_out:
                logger.error(
                    "timed out name=%s timeout=%ss: recorded as failed; the "
                    "previous value stays",
                    name,
                    run.planned.spec.timeout,
                )
                report.failed.append(name)
                report.timed_out.append(name)
                self._after_commit(signals.send_failed, run.planned.spec, outcome)
            elif outcome.error is not None:
                logger.error(
                    "failed name=%s duration=%.3fs error=%s",
                    name,
                    outcome.duration,
                    _error_class(outcome.error),
                    exc_info=outcome.error,
                )
                report.failed.append(name)
                self._after_commit(signals.send_failed, run.planned.spec, outcome)
            else:
                logger.info("ran name=%s duration=%.3fs", name, outcome.duration)
                report.succeeded.append(name)
                self._after_commit(signals.send_stored, run.planned.spec, outcome)
            if not outcome.timed_out:
                run.lock.release()

    def _record_batch(
        self, finished: list[tuple[ClaimedRun, Outcome]]
    ) -> list[tuple[ClaimedRun, bool, Outcome]]:
        """Write a batch of outcomes: values with the database storage in a
        few batched statements, everything else one by one."""
        values = [
            (run, outcome)
            for run, outcome in finished
            if outcome.error is None and self.storage.keeps_history
        ]
        results = []
        if values:
            stored = self._record_values(values)
            results = [(run, run.planned.spec.name in stored, o) for run, o in values]
        batched = {run.token for run, _ in values}
        results.extend(
            (run, *self._record_one(run, outcome))
            for run, outcome in finished
            if run.token not in batched
        )
        return results

    def _record_values(self, finished: list[tuple[ClaimedRun, Outcome]]) -> set[str]:
        """Store values in the state rows, add history and trim it.

        Two statements per function (record, history row; the claim came
        before) and one trim per batch, each kind sent as one batch.
        """
        rows = []
        for run, outcome in finished:
            spec = run.planned.spec
            assert outcome.payload is not None
            rows.append(
                {
                    "name": spec.name,
                    "token": run.token,
                    "version": run.planned.version + 1,
                    "payload": outcome.payload,
                    "computed_at": clock.to_db(outcome.started),
                    "finished": clock.to_db(outcome.finished),
                    "duration": outcome.duration,
                    "next_due": clock.to_db(
                        spec.schedule.next_due(run.planned.slot, outcome.finished)
                    ),
                }
            )
        stored = FunctionState.objects.record_values(rows)
        HistoryEntry.objects.add_many(
            [
                (r["name"], r["payload"], r["computed_at"], r["duration"])
                for r in rows
                if r["name"] in stored
            ]
        )
        HistoryEntry.objects.trim_many(
            [
                (run.planned.spec.name, run.planned.spec.saved)
                for run, _ in finished
                if run.planned.spec.name in stored
            ]
        )
        return stored

    def _record_one(self, run: ClaimedRun, outcome: Outcome) -> tuple[bool, Outcome]:
        """Write one outcome; returns whether it was stored, and the outcome.

        The outcome changes when a computed value cannot be stored (a cache
        backend that is down): the run then counts as failed with that error.
        """
        spec = run.planned.spec
        if outcome.error is None:
            try:
                return self._record_value(run, outcome), outcome
            except Exception as exc:
                outcome = replace(
                    outcome,
                    error=exc,
                    error_traceback=traceback.format_exc(),
                    payload=None,
                    value=None,
                )
        next_due = spec.schedule.next_due(run.planned.slot, outcome.finished)
        if spec.retry_after:
            next_due = min(
                next_due, outcome.finished + timedelta(seconds=spec.retry_after)
            )
        assert outcome.error is not None
        stored = FunctionState.objects.record(
            spec.name,
            run.token,
            keep_claim=outcome.timed_out,
            status=Status.TIMED_OUT if outcome.timed_out else Status.FAILED,
            error_class=_error_class(outcome.error)[:255],
            error_message=_storable_text(_describe(outcome.error)),
            error_traceback=_storable_text(outcome.error_traceback),
            error_at=clock.to_db(outcome.finished),
            last_finished=clock.to_db(outcome.finished),
            duration=outcome.duration,
            next_due=clock.to_db(next_due),
        )
        return stored, outcome

    def _record_alone(
        self, run: ClaimedRun, outcome: Outcome
    ) -> tuple[ClaimedRun, bool, Outcome]:
        try:
            return run, *self._atomic(lambda: self._record_one(run, outcome))
        except DatabaseError as exc:
            if outcome.error is not None:
                raise
            failed = replace(
                outcome,
                error=exc,
                error_traceback=traceback.format_exc(),
                payload=None,
                value=None,
            )
            return run, *self._atomic(lambda: self._record_one(run, failed))

    def _record_value(self, run: ClaimedRun, outcome: Outcome) -> bool:
        spec = run.planned.spec
        assert outcome.payload is not None
        next_due = spec.schedule.next_due(run.planned.slot, outcome.finished)
        computed_at = clock.to_db(outcome.started)

        def record(value_fields: dict[str, Any]) -> bool:
            return FunctionState.objects.record(
                spec.name,
                run.token,
                status=Status.SUCCEEDED,
                value_computed_at=computed_at,
                last_finished=clock.to_db(outcome.finished),
                duration=outcome.duration,
                next_due=clock.to_db(next_due),
                **value_fields,
            )

        stored = self.storage.store(spec.name, outcome.payload, outcome.started, record)
        if stored and self.storage.keeps_history:
            HistoryEntry.objects.create(
                name=spec.name,
                value=outcome.payload,
                computed_at=computed_at,
                duration=outcome.duration,
            )
            HistoryEntry.objects.trim(spec.name, spec.saved)
        return stored

    def _after_commit(
        self,
        send: Callable[[FunctionSpec, Outcome], None],
        spec: FunctionSpec,
        outcome: Outcome,
    ) -> None:
        """Send a signal once the outcome is committed.

        At once in a tick; at the end of the surrounding transaction when the
        tick runs inside one (the admin action under ATOMIC_REQUESTS).
        """
        transaction.on_commit(lambda: send(spec, outcome), using=self.db_alias)

    def _atomic(self, block: Callable[[], T]) -> T:
        """Run ``block`` in a transaction that survives one lost connection."""

        def in_transaction() -> T:
            with transaction.atomic(using=self.db_alias):
                return block()

        return self._reconnecting(in_transaction)

    def _reconnecting(self, block: Callable[[], T]) -> T:
        """Run ``block``; if the connection turns out dead, reconnect once.

        A long function can outlive the server's idle timeout (MySQL's
        wait_timeout), a loop can sleep past it, or the server can kill the
        connection; the first statement afterwards fails before anything
        was written (a transaction rolls back), so running the block once
        more on a new connection is safe.
        """
        connection = connections[self.db_alias]
        try:
            return block()
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block:
                raise  # an outer transaction is broken; retrying cannot help
            # Handled, so no traceback: cron would mail it on every tick.
            logger.info("database connection lost (%s); reconnecting", exc)
            connection.close()
        return block()

    # -- the whole tick -----------------------------------------------------

    def run(self) -> TickReport:
        now = self.now()
        report = TickReport()
        plan = self._reconnecting(lambda: self.plan(now))
        report.not_due = len(plan.not_due)
        report.running_elsewhere.extend(plan.running_elsewhere)
        logger.debug(
            "planned due=%d not_due=%d running_elsewhere=%d",
            len(plan.due),
            len(plan.not_due),
            len(plan.running_elsewhere),
        )
        claimed = self.lock_and_claim(plan, report, now)
        logger.debug("claimed count=%d lock_dir=%s", len(claimed), self.lock_dir)
        self.execute(claimed, report)
        return report


def next_wake(registry: Registry, now: datetime) -> datetime | None:
    """The earliest moment any function becomes due, from one query."""
    earliest: datetime | None = None
    rows = FunctionState.objects.values_list("name", "next_due", "lease_expires")
    for name, next_due, lease_expires in rows:
        if name not in registry.specs:
            continue
        for moment in (clock.from_db(next_due), clock.from_db(lease_expires)):
            if moment is not None and (earliest is None or moment < earliest):
                earliest = moment
    return earliest


class Loop:
    """Ticks repeatedly until stopped or until a deadline passes."""

    def __init__(
        self,
        make_tick: Callable[[], Tick],
        *,
        stop: threading.Event,
        deadline: float | None = None,
        max_sleep: float = 60.0,
    ) -> None:
        self.make_tick = make_tick
        self.stop = stop
        self.deadline = deadline
        self.max_sleep = max_sleep
        # Set when a tick gave up on a timed-out function whose thread still
        # runs: the process must end so that thread ends with it.
        self.stopped_for_hung_thread = False

    def run(self) -> list[TickReport]:
        reports: list[TickReport] = []
        while not self.stop.is_set():
            if self.deadline is not None and time.monotonic() >= self.deadline:
                break
            # Drop connections past CONN_MAX_AGE or known broken, as Django
            # does between requests; the tick reconnects a silently dead one.
            close_old_connections()
            tick = self.make_tick()
            reports.append(tick.run())
            if tick.hung_threads:
                logger.error(
                    "stopping: %s timed-out function(s) may still be running in "
                    "this process, and must not run twice",
                    tick.hung_threads,
                )
                self.stopped_for_hung_thread = True
                break
            wake = next_wake(tick.registry, tick.now())
            sleep = self.max_sleep
            if wake is not None:
                early = min(
                    (s.schedule.tolerance for s in tick.registry.specs.values()),
                    default=timedelta(0),
                )
                sleep = (wake - early - tick.now()).total_seconds()
                sleep = min(max(sleep, 0.05), self.max_sleep)
            if self.deadline is not None:
                sleep = min(sleep, self.deadline - time.monotonic())
            if sleep > 0:
                self.stop.wait(sleep)
        return reports
