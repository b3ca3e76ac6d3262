"""A module whose import fails with an error other than ImportError.

Check E008 must report it instead of letting the exception escape.
"""

from __future__ import annotations

raise RuntimeError("this module is broken on purpose")


def f() -> None:  # never reached
    return None
