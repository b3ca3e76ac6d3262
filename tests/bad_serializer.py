"""A module that imports fine but has no ``serializer``: check E014 names it."""

from __future__ import annotations

SERIALIZER = None  # the wrong name on purpose
