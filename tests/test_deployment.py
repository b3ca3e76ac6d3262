"""The shipped deployment files: systemd units that systemd accepts, and a
crontab entry that a real cron daemon runs.

The units and the crontab hold placeholder paths. The tests render them with
real ones (this virtualenv, the example project) the way the READMEs tell an
operator to, and check what they render to.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

SYSTEMD = REPO / "systemd"
CRON = REPO / "cron"
EXAMPLE = REPO / "example"
# The functions in the example's DUMBWAITER_FUNCTION_LIST.
EXAMPLE_NAMES = {
    "orders-total",
    "top-customers",
    "load-average",
    "disk-usage",
    "daily-revenue",
}


def render(text: str, *, user: str | None = None) -> str:
    """Replace the placeholders as the READMEs say, for the example project."""
    text = (
        text.replace("/path/to/venv", sys.prefix)
        .replace("/path/to/project", str(EXAMPLE))
        .replace("myproject.settings", "exampleproject.settings")
    )
    if user is not None:
        text = text.replace("www-data", user)
    assert "/path/to" not in text
    return text


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` line of a unit file, by key (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def seconds(span: str) -> float:
    """A systemd time span such as '5s', '100ms', '1min' or '15min', in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    number = span.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = span[len(number) :] or "s"
    return float(number) * units[unit]


# -- systemd ------------------------------------------------------------------

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed here",
)


def verify(*units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def rendered_units(tmp_path: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        target = tmp_path / name
        target.write_text(render((SYSTEMD / name).read_text()))
        paths.append(target)
    return paths


@needs_systemd_analyze
@pytest.mark.parametrize(
    "timer", ["dumbwaiter-tick.timer", "dumbwaiter-tick-fast.timer"]
)
def test_the_service_with_each_timer_passes_systemd_analyze_verify(
    tmp_path: Path, timer: str
) -> None:
    """Rendered with this virtualenv and the example project, the service and
    the timer load without a single complaint: exit 0, nothing printed."""
    units = rendered_units(tmp_path, "dumbwaiter-tick.service", timer)

    result = verify(*units)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@needs_systemd_analyze
def test_systemd_analyze_verify_does_check_the_exec_path(tmp_path: Path) -> None:
    """The check above can fail: a service whose python does not exist is
    reported, so verify really looks at the rendered paths."""
    service, timer = rendered_units(
        tmp_path, "dumbwaiter-tick.service", "dumbwaiter-tick.timer"
    )
    service.write_text(
        service.read_text().replace(sys.prefix, str(tmp_path / "no-such-venv"))
    )

    result = verify(service, timer)

    assert result.returncode != 0
    assert "is not executable" in result.stderr


def test_the_service_runs_one_tick_per_start_and_bounds_a_hung_one() -> None:
    """A oneshot running `dumbwaiter_tick --once`, with a start timeout, and
    private /tmp left off so its locks are the ones every other tick sees."""
    service = unit_settings(SYSTEMD / "dumbwaiter-tick.service")

    assert service["Type"] == ["oneshot"]
    (exec_start,) = service["ExecStart"]
    assert exec_start.endswith("manage.py dumbwaiter_tick --once")
    assert seconds(service["TimeoutStartSec"][0]) > 0
    assert service["PrivateTmp"] == ["no"]


@pytest.mark.parametrize(
    ("timer", "interval"),
    [("dumbwaiter-tick.timer", 60), ("dumbwaiter-tick-fast.timer", 5)],
)
def test_each_timer_starts_the_service_at_its_interval(
    timer: str, interval: float
) -> None:
    """Both timers start dumbwaiter-tick.service: first after boot (or at once
    when enabled later), then ``interval`` seconds after each start, at most a
    second late."""
    settings = unit_settings(SYSTEMD / timer)

    assert settings["Unit"] == ["dumbwaiter-tick.service"]
    assert [seconds(v) for v in settings["OnBootSec"]] == [interval]
    assert [seconds(v) for v in settings["OnUnitActiveSec"]] == [interval]
    assert seconds(settings["AccuracySec"][0]) <= 1
    assert settings["WantedBy"] == ["timers.target"]


def test_the_systemd_readme_names_every_shipped_unit() -> None:
    """An operator reading systemd/README.md learns about each file there."""
    readme = (SYSTEMD / "README.md").read_text()
    for unit in sorted(SYSTEMD.glob("dumbwaiter-*")):
        assert unit.name in readme, unit.name


# -- cron -----------------------------------------------------------------------


def crontab_jobs(text: str) -> list[str]:
    """The job lines of a crontab: not comments, not VAR=value lines."""
    jobs = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        first = stripped.split()[0]
        if "=" in first and not first[0].isdigit() and first[0] != "*":
            continue
        jobs.append(stripped)
    return jobs


def test_the_crontab_is_one_minutely_system_job_ending_in_a_newline() -> None:
    """One /etc/cron.d line: every minute, as the site's user, --once in the
    project directory; the file ends with a newline, or cron skips the line."""
    text = (CRON / "dumbwaiter.crontab").read_text()

    assert text.endswith("\n")
    (job,) = crontab_jobs(text)
    fields = job.split(None, 6)
    assert fields[:5] == ["*"] * 5
    assert fields[5] == "www-data"
    assert fields[6] == (
        "cd /path/to/project && /path/to/venv/bin/python manage.py "
        "dumbwaiter_tick --once"
    )


CRON_ENABLED = os.environ.get("DUMBWAITER_CRON_TEST") == "1"
CRON_FILE = Path("/etc/cron.d/dumbwaiter-selftest")
CRON_PID_FILE = Path("/run/crond.pid")


def cron_binary() -> str | None:
    return shutil.which("cron") or (
        "/usr/sbin/cron" if os.access("/usr/sbin/cron", os.X_OK) else None
    )


def install_cron() -> str:
    """Debian's cron, installed with apt-get if it is missing."""
    found = cron_binary()
    if found:
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", "cron"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode:
        # The package lists may be missing or stale: refresh them once.
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=600)
        subprocess.run(install, env=env, check=True, timeout=600)
    found = cron_binary()
    assert found, "apt-get installed cron, but there is no cron binary"
    return found


def example_env() -> dict[str, str]:
    """This environment without what pytest and the suite set for tests.

    pytest-django exports DJANGO_SETTINGS_MODULE=tests.settings, which
    manage.py would otherwise use instead of the example's settings.
    """
    return {
        key: value
        for key, value in os.environ.items()
        if key != "DJANGO_SETTINGS_MODULE" and not key.startswith("DUMBWAITER_TEST")
    }


def manage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the example's manage.py with this virtualenv's python."""
    return subprocess.run(
        [str(Path(sys.prefix) / "bin" / "python"), "manage.py", *args],
        cwd=EXAMPLE,
        env=example_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def running_cron_pid() -> int | None:
    """The pid of a cron daemon that is already running, if any."""
    try:
        pid = int(CRON_PID_FILE.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == "cron" else None


def example_values(database: Path) -> dict[str, str]:
    """name -> status of every example function that has a stored value."""
    if not database.exists():
        return {}
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=20)
    try:
        rows = connection.execute(
            "SELECT name, status FROM dumbwaiter_functionstate WHERE value IS NOT NULL"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}  # not migrated yet, or locked for longer than the timeout
    finally:
        connection.close()
    return dict(rows)


def ticks_of_the_example() -> list[int]:
    """Pids of dumbwaiter_tick processes running in the example project."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"dumbwaiter_tick" in argv and cwd == str(EXAMPLE):
            pids.append(int(proc.name))
    return pids


@pytest.mark.subprocess
@pytest.mark.skipif(
    not CRON_ENABLED,
    reason="installs a system crontab and starts cron: set DUMBWAITER_CRON_TEST=1 "
    "(CI does) to run it",
)
@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="installing /etc/cron.d entries and starting cron needs root",
)
def test_cron_runs_the_shipped_entry_and_the_example_gets_its_values(
    tmp_path: Path,
) -> None:
    """The crontab from cron/, rendered for the example project and installed
    in /etc/cron.d, is run by a real cron daemon within two minute boundaries:
    every example function then has a stored value, and show_values agrees.

    The example keeps its database at example/db.sqlite3 (its settings offer
    no way to move it), so any existing file is set aside and put back after.
    """
    cron = install_cron()
    database = EXAMPLE / "db.sqlite3"
    saved = tmp_path / "db.sqlite3.saved"
    had_database = database.exists()
    if had_database:
        shutil.copy2(database, saved)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        database.unlink(missing_ok=True)
        migrated = manage("migrate", "--verbosity", "0")
        assert migrated.returncode == 0, migrated.stderr
        assert database.exists()
        assert example_values(database) == {}

        CRON_FILE.write_text(
            render((CRON / "dumbwaiter.crontab").read_text(), user="root")
        )
        os.chown(CRON_FILE, 0, 0)
        CRON_FILE.chmod(0o644)

        if running_cron_pid() is None:
            # -f: stay in the foreground, so this test owns the process.
            daemon = subprocess.Popen(
                [cron, "-f"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )

        deadline = time.monotonic() + 150
        values = example_values(database)
        while set(values) != EXAMPLE_NAMES and time.monotonic() < deadline:
            if daemon is not None and daemon.poll() is not None:
                output = daemon.stdout.read().decode() if daemon.stdout else ""
                pytest.fail(f"cron exited with {daemon.returncode}: {output}")
            time.sleep(1)
            values = example_values(database)

        if set(values) != EXAMPLE_NAMES:
            # cron mails a job's output, which may go nowhere here: show what
            # the same command says when run by hand.
            by_hand = manage("dumbwaiter_tick", "--once", "-v", "2")
            pytest.fail(
                f"after 150 s the example has values for {sorted(values)} only; "
                f"run by hand the tick exits {by_hand.returncode}: "
                f"{by_hand.stderr}"
            )
        assert values == dict.fromkeys(EXAMPLE_NAMES, "ok")
        shown = manage("show_values")
        assert shown.returncode == 0, shown.stdout + shown.stderr
    finally:
        CRON_FILE.unlink(missing_ok=True)
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)
        # A tick cron started just now may still be writing the database.
        settle = time.monotonic() + 60
        while ticks_of_the_example() and time.monotonic() < settle:
            time.sleep(0.5)
        if had_database:
            shutil.copy2(saved, database)
        else:
            database.unlink(missing_ok=True)
