"""System checks: every configuration mistake, with a stable ID and a hint.

The IDs are listed in the README. The same validation makes the tick exit 2.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from dumbwaiter import specs


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    # Always validate afresh: `manage.py check` is where people look after
    # editing settings.
    return [
        Error(problem.msg, hint=problem.hint, id=problem.id)
        for problem in specs.validate().problems
    ]
