# Sourced by the scripts beside it: makes (or reuses) a virtual environment and
# installs the project into it with the extras named in $EXTRAS.
#   DUMBWAITER_VENV  where the environment lives (default .venv)
#   PYTHON           the interpreter that creates it (default python3)
#   DJANGO_SPEC      a pip requirement that pins Django (optional)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${DUMBWAITER_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
target="."
[ -n "${EXTRAS:-}" ] && target=".[$EXTRAS]"
"${PIP[@]}" -e "$target" ${DJANGO_SPEC:+"$DJANGO_SPEC"}
