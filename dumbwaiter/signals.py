"""Signals sent by the tick after it has stored a run's outcome.

Both are sent from the tick's main thread once the outcome is committed, with
``sender`` the :class:`~dumbwaiter.specs.FunctionSpec`:

- ``value_stored``: ``name``, ``value`` (as the function returned it),
  ``computed_at``, ``duration`` (seconds).
- ``run_failed``: ``name``, ``error`` (the exception), ``timed_out``,
  ``duration``.

A receiver that raises is logged and does not disturb the tick.
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


def _send(signal: Signal, spec: FunctionSpec, **kwargs: Any) -> None:
    for receiver, result in signal.send_robust(sender=spec, name=spec.name, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "signal receiver failed name=%s receiver=%r",
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
