from __future__ import annotations

from django.apps import AppConfig


class DumbwaiterConfig(AppConfig):
    name = "dumbwaiter"
    verbose_name = "Dumbwaiter"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks and the settings-change receiver.
        from dumbwaiter import checks, specs  # noqa: F401
