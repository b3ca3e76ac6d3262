from typing import Any

import dumbwaiter
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# A function may legitimately return None, so "no value stored" needs a
# marker of its own.
MISSING = object()


class Command(BaseCommand):
    help = (
        "Print the newest stored value of every function in "
        "DUMBWAITER_FUNCTION_LIST, one per line. Exits 1 if any has none yet."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        missing = []
        for spec in settings.DUMBWAITER_FUNCTION_LIST:
            name = spec["name"]
            value = dumbwaiter.get_value(name, default=MISSING)
            if value is MISSING:
                missing.append(name)
                self.stdout.write(f"{name}: (not computed yet)")
            else:
                self.stdout.write(f"{name}: {value!r}")
        if missing:
            raise CommandError(
                f"no stored value for {', '.join(missing)}: not run yet, or "
                "every run so far failed",
                returncode=1,
            )
