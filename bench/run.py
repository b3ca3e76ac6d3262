"""Runs every benchmark in its own child process and prints one table.

Started by ``bench/run``, which makes the virtual environments first; this
file runs in bench/.venv-dumbwaiter. Each child prints its figures as
``BENCH-RESULT {json}`` lines; everything else it says goes to stderr.

    bench/run [--only read,idle,busy,growth,peers] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.common import RESULT_PREFIX, ratio, row  # noqa: E402

SECTIONS = ["read", "idle", "busy", "growth", "peers"]
VENVS = {
    "": BENCH / ".venv-dumbwaiter",
    "django-cron": BENCH / ".venv-djcron",
    "chroniker": BENCH / ".venv-chroniker",
}
PG_PREFIX = "dumbwaiter_bench"
# Per-job peer runs: chroniker's jobs cost tens of milliseconds each.
PEER_N = {"": 1000, "django-cron": 1000, "chroniker": 100}
TARGET_PEER_RATIO = 10.0


def reachable(host: str, port: int | str) -> bool:
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def pg_database(name: str, *more: str) -> Iterator[None]:
    """Fresh PostgreSQL databases (names under dumbwaiter_bench), dropped after."""
    import psycopg

    names = [name, *more]
    assert all(n.startswith(PG_PREFIX) for n in names)
    connection = psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
    )
    try:
        for n in names:
            connection.execute(f'DROP DATABASE IF EXISTS "{n}"')
            connection.execute(f'CREATE DATABASE "{n}"')
        yield
    finally:
        for n in names:
            connection.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
        connection.close()


class Runner:
    def __init__(self, workdir: Path, quick: bool) -> None:
        self.workdir = workdir
        self.quick = quick
        self.rows: list[dict[str, Any]] = []
        self.failures = 0
        self.children = 0

    def command(
        self, module: str, db: str, env: dict[str, str], *args: str, peer: str = ""
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of ``python -m bench.<module>``."""
        self.children += 1
        tag = f"{module}-{self.children}"
        full = dict(os.environ)
        full.update(
            DJANGO_SETTINGS_MODULE="bench.settings",
            PYTHONPATH=os.pathsep.join(
                p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p
            ),
            BENCH_DB=db,
            BENCH_SQLITE=str(self.workdir / f"{tag}.sqlite3"),
            BENCH_PG_NAME=f"{PG_PREFIX}_{tag.replace('-', '_')}",
            BENCH_LOCK_DIR=str(self.workdir / f"locks-{tag}"),
            BENCH_PEER=peer,
        )
        full.update(env)
        python = VENVS[peer] / "bin" / "python"
        argv = [str(python), "-m", f"bench.{module}", *args]
        print(
            f"bench: {' '.join(argv[2:])} on {db} {env} {peer}",
            file=sys.stderr,
            flush=True,
        )
        return argv, full

    def child(
        self, module: str, db: str, env: dict[str, str], *args: str
    ) -> list[dict[str, Any]]:
        """Run ``python -m bench.<module>`` with fresh databases; its rows."""
        argv, full = self.command(module, db, env, *args)
        databases: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if db == "postgresql":
            name = full["BENCH_PG_NAME"]
            extra = [f"{name}_small", f"{name}_big"] if env.get("BENCH_GROWTH") else []
            databases = pg_database(name, *extra)
        started = time.monotonic()
        with databases:
            done = subprocess.run(
                argv, cwd=REPO, env=full, stdout=subprocess.PIPE, text=True, check=False
            )
        rows = [
            json.loads(line[len(RESULT_PREFIX) :])
            for line in done.stdout.splitlines()
            if line.startswith(RESULT_PREFIX)
        ]
        print(
            f"bench:   {time.monotonic() - started:.0f}s, exit {done.returncode}",
            file=sys.stderr,
            flush=True,
        )
        if done.returncode != 0:
            self.failures += 1
            what = f"FAILED (exit {done.returncode}): {' '.join(args)}"
            rows.append(
                row(module, db, what, None, "", "", False, "see the traceback above")
            )
        self.rows.extend(rows)
        return rows

    def skip(self, bench: str, db: str, why: str) -> None:
        self.rows.append(row(bench, db, f"skipped: {why}", None, ""))

    def rounds(self, full: int, quick: int) -> str:
        return str(quick if self.quick else full)


def run(sections: list[str], runner: Runner) -> None:
    databases = ["sqlite"]
    pg = (os.environ.get("PGHOST", "127.0.0.1"), os.environ.get("PGPORT", "5432"))
    if reachable(*pg):
        databases.append("postgresql")
    else:
        runner.skip("all", "postgresql", "nothing answers on {}:{}".format(*pg))
    redis = reachable("127.0.0.1", 6379)

    if "read" in sections:
        for db in databases:
            runner.child(
                "read_path", db, {"BENCH_READ": "1"}, "--rounds", runner.rounds(15, 5)
            )
            if redis:
                runner.child(
                    "read_path",
                    db,
                    {"BENCH_READ": "1", "BENCH_STORAGE": "cache:redis"},
                    "--rounds",
                    runner.rounds(15, 5),
                )
            else:
                runner.skip("read", db, "Redis does not answer on 127.0.0.1:6379")
    if "idle" in sections:
        for db in databases:
            runner.child(
                "idle_tick",
                db,
                {"BENCH_FUNCTIONS": "1000"},
                "--rounds",
                runner.rounds(20, 5),
            )
    if "busy" in sections:
        for db in databases:
            for threaded in ("1", "0"):
                runner.child(
                    "busy_tick",
                    db,
                    {},
                    "--n",
                    "1000",
                    "--threaded",
                    threaded,
                    "--rounds",
                    runner.rounds(5, 2),
                )
    if "growth" in sections:
        for db in databases:
            runner.child(
                "growth",
                db,
                {"BENCH_GROWTH": "1", "BENCH_FUNCTIONS": "100", "BENCH_SAVED": "5"},
                "--rounds",
                runner.rounds(10, 3),
            )
    if "peers" in sections:
        peers(runner)


def peers(runner: Runner) -> None:
    """The three systems in three processes, interleaved round by round."""
    from bench.peers import READY_PREFIX, TIME_PREFIX, report

    rounds = int(runner.rounds(4, 2))
    processes: dict[str, subprocess.Popen[str]] = {}
    about: dict[str, dict[str, Any]] = {}
    for peer, n in PEER_N.items():
        if not (VENVS[peer] / "bin" / "python").exists():
            runner.skip("peers", "sqlite", f"no {VENVS[peer].name}; use bench/run")
            continue
        count = n if not runner.quick else n // 4
        argv, env = runner.command(
            "peers", "sqlite", {"BENCH_FUNCTIONS": str(count)}, "--serve", peer=peer
        )
        processes[peer] = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def answer(peer: str, prefix: str) -> str:
        stdout = processes[peer].stdout
        assert stdout is not None
        for line in stdout:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        raise RuntimeError(f"{peer or 'dumbwaiter'} stopped (see above)")

    times: dict[str, dict[int, list[float]]] = {}
    try:
        for peer in processes:
            about[peer] = json.loads(answer(peer, READY_PREFIX))
            times[peer] = {about[peer]["n"]: [], 0: []}
        names = list(processes)
        for index in range(rounds):
            shift = index % len(names)
            for peer in names[shift:] + names[:shift]:
                n = about[peer]["n"]
                for count in [n, 0] if index % 2 == 0 else [0, n]:
                    stdin = processes[peer].stdin
                    assert stdin is not None
                    stdin.write(f"{count}\n")
                    stdin.flush()
                    got, seconds = answer(peer, TIME_PREFIX).split()
                    assert int(got) == count
                    times[peer][count].append(float(seconds))
    except (RuntimeError, OSError) as exc:
        runner.failures += 1
        runner.skip("peers", "sqlite", f"FAILED: {exc}")
        return
    finally:
        for process in processes.values():
            if process.stdin:
                process.stdin.close()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    marginal: dict[str, list[float]] = {}
    for peer in processes:
        n = about[peer]["n"]
        with_n, without = times[peer][n], times[peer][0]
        runner.rows.append(report(about[peer], with_n, without))
        marginal[peer] = [(a - b) / n for a, b in zip(with_n, without, strict=True)]
    own = marginal.get("")
    for peer in ("django-cron", "chroniker"):
        if own and peer in marginal:
            figure = ratio(marginal[peer], own)
            runner.rows.append(
                row(
                    "peers",
                    "sqlite",
                    f"{peer} per-job cost / dumbwaiter per-job cost",
                    figure,
                    "x",
                    f">= {TARGET_PEER_RATIO:g}",
                    figure >= TARGET_PEER_RATIO,
                    f"median of {rounds} interleaved rounds",
                )
            )


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model or platform.machine()}"


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "dumbwaiter"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (dumbwaiter/ modified)" if dirty else "")


def figure_text(row: dict[str, Any]) -> str:
    figure, unit = row["figure"], row["unit"]
    if figure is None:
        return "-"
    if unit == "x":
        return f"{figure:.2f}x"
    if unit == "queries":
        return f"{figure:g} queries" if figure == int(figure) else f"{figure:.3f}"
    return f"{figure:.3f} {unit}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| # | benchmark | db | figure | target | met | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    numbers = {name: str(i + 1) for i, name in enumerate(SECTIONS)}
    for line in rows:
        met = {True: "yes", False: "**NO**", None: ""}[line["ok"]]
        lines.append(
            f"| {numbers.get(line['bench'], '')} | {line['what']} | {line['db']} | "
            f"{figure_text(line)} | {line['target']} | {met} | {line['detail']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections ({', '.join(SECTIONS)})",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="dumbwaiter-bench-"))
    runner = Runner(workdir, args.quick)
    try:
        run(sections, runner)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\ndumbwaiter benchmarks, {now}; commit {commit()}; {machine()}; "
        f"Python {platform.python_version()}; load average {load_before:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after; {elapsed:.0f}s"
        + ("; --quick" if args.quick else "")
        + "\n"
    )
    print(table(runner.rows))
    if args.json:
        Path(args.json).write_text(json.dumps(runner.rows, indent=2) + "\n")
    sys.exit(1 if runner.failures else 0)


if __name__ == "__main__":
    main()
