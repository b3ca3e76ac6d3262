"""Exceptions dumbwaiter raises to the code that uses it."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class DumbwaiterError(Exception):
    """Base class of every error dumbwaiter raises on purpose."""


class ConfigurationError(DumbwaiterError, ImproperlyConfigured):
    """The ``DUMBWAITER_*`` settings are wrong; the message says how to fix them."""


class UnknownFunction(DumbwaiterError, LookupError):
    """A name that is not in ``DUMBWAITER_FUNCTION_LIST`` was asked for."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listed = ", ".join(repr(k) for k in known) if known else "none"
        super().__init__(
            f"{name!r} is not in DUMBWAITER_FUNCTION_LIST (known functions: {listed})"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class RunAbandoned(DumbwaiterError):
    """Recorded for a run whose tick died before it could record the result."""


class FunctionTimeout(DumbwaiterError):
    """Recorded for a run still going after its entry's ``timeout``."""
