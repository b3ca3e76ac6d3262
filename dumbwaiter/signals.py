"""Signals sent by the tick after it has stored a run's outcome.

Both are sent from the tick's main thread once the outcome is committed, with
``sender`` the :class:`~dumbwaiter.specs.FunctionSpec`:

- ``value_stored``: ``name``, ``value`` (as the function returned it),
  ``computed_at``, ``duration`` (seconds).
- ``run_failed``: ``name``, ``error`` (the exception), ``timed_out``,
  ``duration``.

A receiver that raises is logged on ``dumbwaiter.signals`` (Django logs it on
``django.dispatch`` too) and does not disturb the tick. Receivers should
match on ``name``: the sender object is rebuilt whenever the settings are
validated again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.dispatch import Signal

if TYPE_CHECKING:
    from dumbwaiter.specs import FunctionSpec
    from dumbwaiter.tick import Outcome

logger = logging.getLogger("dumbwaiter.signals")

value_stored = Signal()
run_failed = Signal()

_names = {value_stored: "value_stored", run_failed: "run_failed"}


def _send(signal: Signal, spec: FunctionSpec, **kwargs: Any) -> None:
    try:
        results = signal.send_robust(sender=spec, name=spec.name, **kwargs)
    except Exception:
        # send_robust itself can fail while logging a receiver's error, for
        # example for a receiver object without __qualname__.
        logger.exception("sending %s failed name=%s", _names[signal], spec.name)
        return
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error(
                "signal receiver failed signal=%s name=%s receiver=%r",
                _names[signal],
                spec.name,
                receiver,
                exc_info=result,
            )


def send_stored(spec: FunctionSpec, outcome: Outcome) -> None:
    _send(
        value_stored,
        spec,
        value=outcome.value,
        computed_at=outcome.started,
        duration=outcome.duration,
    )


def send_failed(spec: FunctionSpec, outcome: Outcome) -> None:
    _send(
        run_failed,
        spec,
        error=outcome.error,
        timed_out=outcome.timed_out,
        duration=outcome.duration,
    )
