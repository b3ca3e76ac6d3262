#!/usr/bin/env python
"""Command-line entry point for the dumbwaiter example project."""

import os
import sys
from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXAMPLE_DIR.parent


def main() -> None:
    # The example runs from a plain checkout, so the repository root has to be
    # importable for `import dumbwaiter`, and example/ for the project itself,
    # whichever directory the command is started from.
    for path in (EXAMPLE_DIR, REPO_ROOT):
        if str(path) not in sys.path:
            sys.path.insert(1, str(path))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
