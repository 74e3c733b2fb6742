"""The processes a benchmark run starts, and the databases it reads.

A *setup* is one way to run the product (DESIGN.md "Two ways to run"):

- ``embedded``: no DATABASE_URL and no REDIS_URL, so a SQLite file under a
  fresh temporary VAR_DIR and the in-process log writer;
- ``scaled``: PostgreSQL (database ``helicone_bench``, dropped and recreated
  each run), Redis db 2, ``LOG_WRITER_IN_PROCESS=0`` in daphne and one
  ``manage.py run_log_writer`` process.

In both, the log journal is the default ``VAR_DIR/journal``, shared by every
process of the setup (so a daphne started after one was killed finds its journal).

Every child process gets an environment built here from scratch for its
setup, so whatever the caller exported (``make test`` in CI exports
DATABASE_URL and REDIS_URL) never leaks into a measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# Where child processes run the code from: a snapshot of the working tree taken at the
# start of a run (see snapshot_source), so edits made while a run is going (others work
# in this tree) never mix two versions of the code, or a model without its migration.
SRC = ROOT
_SNAPSHOT_SKIP = {".git", ".venv", "var", "node_modules", "__pycache__", ".pytest_cache", "results", ".mypy_cache"}


def snapshot_source(dest: Path) -> Path:
    """Copy the working tree (code, not data) to `dest`; later processes run from there."""
    global SRC
    shutil.copytree(ROOT, dest, ignore=lambda d, names: [n for n in names if n in _SNAPSHOT_SKIP
                                                         or n.endswith((".pyc", ".sqlite3", ".log"))])
    SRC = dest
    return dest

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "helicone_bench"
REDIS_BENCH_URL = "redis://127.0.0.1:6379/2"
LOG_TABLE = "analytics_requestlog"

# Settings the harness decides; anything the caller exported under these names is dropped.
_CONTROLLED = (
    "DATABASE_URL", "REDIS_URL", "VAR_DIR", "LOG_WRITER_IN_PROCESS", "LOG_STREAM_KEY", "LOG_SPOOL_DIR",
    "LOG_WRITER_BATCH_SIZE", "DEBUG", "SECRET_KEY", "LOG_LEVEL", "DJANGO_SETTINGS_MODULE",
    "GATEWAY_AUTH_CACHE_SECONDS", "REQUIRE_SERVICES", "LOG_JOURNAL_DIR", "LOG_JOURNAL_FSYNC_SECONDS",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Put every thread of a running process on `cpus` (sched_setaffinity moves one thread)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for task in tasks:
        try:
            os.sched_setaffinity(int(task), cpus)
        except OSError:  # a thread that has just ended
            pass


class Pinning:
    """CPU placement. Disabled (the default of a benchmark run): every process floats on
    every core, as on a user's machine. Enabled, with two or more cores: the load generator
    (wrk) and the mock provider share core 0, daphne gets the other cores to itself;
    PostgreSQL, Redis and the log writers float."""

    def __init__(self, enabled: bool):
        self.cpus = sorted(os.sched_getaffinity(0))
        self.enabled = enabled and len(self.cpus) >= 2 and shutil.which("taskset") is not None
        self.load = str(self.cpus[0]) if self.enabled else None
        self.gateway = ",".join(map(str, self.cpus[1:])) if self.enabled else None

    def wrap(self, cmd: list[str], cpus: str | None) -> list[str]:
        if not self.enabled:
            return cmd
        return ["taskset", "-c", cpus or ",".join(map(str, self.cpus)), *cmd]

    @contextlib.contextmanager
    def place(self, pid: int, cpus: str | None):
        """Move an already running process (the mock provider) to `cpus` for a while."""
        if not self.enabled or not cpus:
            yield
            return
        try:
            before = os.sched_getaffinity(pid)
        except OSError:
            before = set(self.cpus)
        set_affinity(pid, {int(c) for c in cpus.split(",")})
        try:
            yield
        finally:
            set_affinity(pid, before)

    def describe(self) -> str:
        if not self.enabled:
            return (f"no CPU pinning: wrk, the aiohttp client, the mock provider, daphne, PostgreSQL, Redis "
                    f"and the log writers share all {len(self.cpus)} CPUs, as on a user's machine")
        return (f"taskset: wrk and the mock provider on CPU {self.load}; daphne on CPU {self.gateway}; "
                f"PostgreSQL, Redis and run_log_writer unpinned")


class Proc:
    """A child process with its output in a log file; stopped by its own handle only."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=SRC, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for_output(self, needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            for line in text.splitlines():
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no {needle!r} in its output after {timeout}s")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every `interval` seconds; `peak_kb` is the highest seen."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.start_kb = proc_status(pid).get("VmRSS", 0)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_kb = max(self.peak_kb, proc_status(self.pid).get("VmRSS", 0))
            self._done.wait(self.interval)

    def finish(self) -> dict[str, float]:
        self._done.set()
        self.join()
        status = proc_status(self.pid)
        self.peak_kb = max(self.peak_kb, status.get("VmRSS", 0))
        return {
            "rss_before_mb": round(self.start_kb / 1024, 1),
            "rss_peak_mb": round(self.peak_kb / 1024, 1),
            "rss_after_mb": round(status.get("VmRSS", 0) / 1024, 1),
            "vmhwm_mb": round(status.get("VmHWM", 0) / 1024, 1),
        }


class MockProviderProcess:
    """`python -m bench.mock_provider` in its own process (its own core and GIL)."""

    def __init__(self, workdir: Path, pinning: Pinning):
        port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        module = os.environ.get("BENCH_MOCK_MODULE", "bench.mock_provider")
        self.proc = Proc("mock provider", pinning.wrap(
            [PY, "-m", module, "--host", "127.0.0.1", "--port", str(port)], pinning.load),
            env, workdir / "mock_provider.log")
        line = self.proc.wait_for_output("listening on")
        self.url = line.split("listening on", 1)[1].strip().rstrip("/")
        wait_for_port(port, self.proc.proc)

    def stop(self) -> None:
        self.proc.stop(10)


class Setup:
    """One way to run the product: its environment, database and processes."""

    def __init__(self, name: str, workdir: Path, pinning: Pinning, mock_url: str,
                 database_url: str | None = None, redis_url: str | None = None):
        """database_url / redis_url: other databases than the benchmark's own (the soak's)."""
        assert name in ("embedded", "scaled")
        self.name = name
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pinning = pinning
        self.mock_url = mock_url
        self.procs: list[Proc] = []
        env = {k: v for k, v in os.environ.items() if k not in _CONTROLLED and not k.startswith("UPSTREAM_")}
        env.update(
            VAR_DIR=str(self.workdir / "var"),
            # As in production: DEBUG off, so a secret key is required.
            DEBUG="0",
            SECRET_KEY="bench-" + secrets.token_urlsafe(40),
            PYTHONUNBUFFERED="1",
            UPSTREAM_OPENAI_URL=mock_url,
            UPSTREAM_ANTHROPIC_URL=mock_url,
        )
        self.database_url = database_url or ""
        if name == "scaled":
            self.database_url = database_url or f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"
            env.update(
                DATABASE_URL=self.database_url,
                REDIS_URL=redis_url or REDIS_BENCH_URL,
                LOG_WRITER_IN_PROCESS="0",
            )
        elif database_url:
            env.update(DATABASE_URL=database_url)
        self.env = env
        self.sqlite_path = (Path(database_url.removeprefix("sqlite:///")) if name == "embedded" and database_url
                            else self.workdir / "var" / "helicone.sqlite3")

    # -- preparation -------------------------------------------------------------------------
    def prepare(self) -> None:
        """A fresh database, migrated; for scaled, an empty Redis db 2."""
        if self.name == "scaled":
            import psycopg
            import redis

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")
            redis.Redis.from_url(REDIS_BENCH_URL).flushdb()
        self.manage("migrate", "--noinput", timeout=300)

    def manage(self, *args: str, env: dict | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            self.pinning.wrap([PY, "manage.py", *args], None), cwd=SRC, env=env or self.env,
            capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed ({self.name}):\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def create_tenants(self, names: list[str]) -> dict[str, dict]:
        """A fresh org and proxy key per scenario: {name: {"org_id", "key_id", "key"}}."""
        tag = uuid.uuid4().hex[:8]
        # The operators' commands (manage.py create_org / create_api_key), called in one
        # process: one Django start-up instead of two per tenant.
        code = (
            "import io, json, os\n"
            "from django.core.management import call_command\n"
            "from orgs.models import ApiKey, Organization, hash_api_key\n"
            "tag = os.environ['BENCH_TAG']\n"
            "out = {}\n"
            "for name in os.environ['BENCH_TENANTS'].split(','):\n"
            "    slug = ('bench-' + tag + '-' + name.replace('_', '-'))[:60]\n"
            "    call_command('create_org', slug, name='bench ' + name, owner='bench-' + tag + '@example.invalid',"
            " stdout=io.StringIO())\n"
            "    buf = io.StringIO()\n"
            "    call_command('create_api_key', slug, name='bench ' + name, scopes='proxy', stdout=buf)\n"
            "    raw = buf.getvalue().strip().splitlines()[-1]\n"
            "    key = ApiKey.objects.get(hashed_key=hash_api_key(raw))\n"
            "    out[name] = {'org_id': key.org_id, 'key_id': key.id, 'key': raw}\n"
            "print('BENCHJSON ' + json.dumps(out))\n"
        )
        env = dict(self.env, BENCH_TENANTS=",".join(names), BENCH_TAG=tag)
        stdout = self.manage("shell", "-c", code, env=env)
        for line in stdout.splitlines():
            if line.startswith("BENCHJSON "):
                return json.loads(line[len("BENCHJSON "):])
        raise RuntimeError(f"tenant creation printed no result:\n{stdout}")

    # -- processes ---------------------------------------------------------------------------
    def start_writer(self, extra_env: dict | None = None, name: str = "run_log_writer") -> Proc:
        proc = Proc(name, self.pinning.wrap([PY, "manage.py", "run_log_writer"], None),
                    dict(self.env, **(extra_env or {})), self.workdir / f"{name}.log")
        self.procs.append(proc)
        proc.wait_for_output("consuming", timeout=60)
        return proc

    def start_daphne(self, verbosity: int | None = None, label: str = "daphne",
                     pinning: Pinning | None = None) -> "Daphne":
        """One daphne process; `pinning` (default: the setup's) places it."""
        daphne = Daphne(self, verbosity, label, pinning or self.pinning)
        self.procs.append(daphne.proc)
        return daphne

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    # -- the log table -------------------------------------------------------------------------
    def _query(self, sql: str, params: tuple) -> list[tuple]:
        if self.name == "scaled":
            import psycopg

            with psycopg.connect(self.database_url) as conn:
                return conn.execute(sql.replace("?", "%s"), params).fetchall()
        conn = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def log_counts(self, org_id: int) -> dict[str, int]:
        """Rows logged for an org: all, and the complete successes (200, not cancelled, no error)."""
        total, ok, cancelled = self._query(
            f"SELECT COUNT(*), "
            f"COALESCE(SUM(CASE WHEN status = 200 AND NOT cancelled AND error = '' THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN cancelled THEN 1 ELSE 0 END), 0) "
            f"FROM {LOG_TABLE} WHERE org_id = ?", (org_id,))[0]
        return {"rows": int(total), "ok": int(ok), "cancelled": int(cancelled)}

    def logged_ids(self, org_id: int) -> set[str]:
        rows = self._query(f"SELECT id FROM {LOG_TABLE} WHERE org_id = ?", (org_id,))
        return {uuid.UUID(str(r[0])).hex for r in rows}

    def rows_per_id(self, org_id: int) -> dict[str, int]:
        """How many rows each log id of an org has (the id is the key: a replay must not add one)."""
        rows = self._query(f"SELECT id, COUNT(*) FROM {LOG_TABLE} WHERE org_id = ? GROUP BY id", (org_id,))
        return {uuid.UUID(str(r[0])).hex: int(r[1]) for r in rows}

    def wait_for_logs(self, org_id: int, at_least: int, timeout: float = 120.0, settle: float = 1.0,
                      stalled: float = 15.0) -> dict:
        """Poll until the org has `at_least` rows and the count has stopped moving; give up when
        the count has not moved for `stalled` seconds (rows are missing) or after `timeout`."""
        deadline = time.monotonic() + timeout
        last, last_change = None, time.monotonic()
        while True:
            counts = self.log_counts(org_id)
            now = time.monotonic()
            if counts != last:
                last, last_change = counts, now
            if counts["rows"] >= at_least and now - last_change >= settle:
                return counts
            if now > deadline or now - last_change >= stalled:
                return counts
            time.sleep(0.1)


class Daphne:
    """`python -m daphne -v 0 -b 127.0.0.1 -p PORT heliconeproj.asgi:application`, as `make serve` runs it."""

    def __init__(self, setup: Setup, verbosity: int | None, label: str, pinning: Pinning):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
               "-v", str(0 if verbosity is None else verbosity)]  # -v 0: as `make serve` runs it
        cmd.append("heliconeproj.asgi:application")
        self.cmd = cmd
        self.proc = Proc(label, pinning.wrap(cmd, pinning.gateway), setup.env,
                         setup.workdir / f"{label}-{self.port}.log")
        wait_for_port(self.port, self.proc.proc)

    @property
    def pid(self) -> int:
        return self.proc.pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def children_of(pid: int) -> list[int]:
    """The processes a process started (daphne's embedded log writer): the server's own work."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _own_cpu_seconds() -> float:
    """CPU time of this process (the aiohttp client) and its waited-for children (wrk, manage.py)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMeter:
    """CPU used by the server process over a span, how busy the whole machine was, and how
    much of that was not ours: the machine may be shared with other sessions' work."""

    def __init__(self, pid: int | None, ours: list[int] = ()):
        self.pid = pid
        # The server's CPU includes its children (the embedded writer process daphne forks).
        self.server = [pid, *children_of(pid)] if pid else []
        self.ours = [p for p in {*self.server, *ours} if p]
        self.cpu0 = sum(cpu_seconds(p) for p in self.server)
        self.ours0 = sum(cpu_seconds(p) for p in self.ours) + _own_cpu_seconds()
        self.jiffies0 = machine_jiffies()
        self.t0 = time.monotonic()

    def finish(self, requests: int | None = None) -> dict:
        wall = time.monotonic() - self.t0
        busy1, total1 = machine_jiffies()
        busy = busy1 - self.jiffies0[0]
        total = total1 - self.jiffies0[1]
        ours = sum(cpu_seconds(p) for p in self.ours) + _own_cpu_seconds() - self.ours0
        hz = os.sysconf("SC_CLK_TCK")
        out = {"machine_busy_pct": round(100 * busy / total, 1) if total else None}
        if total:
            # Busy time of processes the harness did not start: other sessions, and PostgreSQL/Redis.
            out["other_cpu_pct"] = round(max(0.0, 100 * (busy / hz - ours) / (total / hz)), 1)
        if self.pid:
            used = sum(cpu_seconds(p) for p in self.server) - self.cpu0
            out["gateway_cpu_pct_of_one_core"] = round(100 * used / wall, 1) if wall else None
            if requests:
                out["gateway_cpu_ms_per_request"] = round(1000 * used / requests, 3)
        return out


def other_load() -> dict:
    """The load average and the busiest processes: this machine may be shared."""
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    result = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True)
    top = [line.strip()[:160] for line in result.stdout.splitlines()[1:6]]
    return {"loadavg": [float(x) for x in load], "top_processes": top}
