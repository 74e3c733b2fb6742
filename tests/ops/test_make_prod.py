"""`make prod`: two daphne processes behind one port, a log writer and the alert
evaluator under supervisord, on PostgreSQL and Redis, as an operator runs it.

It needs PostgreSQL and Redis whatever the setup of the run: a database of its
own (dropped and created here) on the local PostgreSQL, and a redis-server of
its own."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psycopg
import pytest

from bench.mock_provider import MockProvider
from bench.stack import free_port
from tests.base import require_service

from .helpers import RedisServer, connection_owner, get, sample

ROOT = Path(__file__).resolve().parents[2]
STACK_DB = "helicone_test_make_prod"
# Variables of the outer run (and of an outer make) that must not reach `make prod`.
_DROPPED = ("DATABASE_URL", "REDIS_URL", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "VAR_DIR",
            "LOG_STREAM_KEY", "LOG_SPOOL_DIR", "PROMETHEUS_MULTIPROC_DIR", "DEBUG", "METRICS_TOKEN")


def _postgres_admin_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        url = "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(url)
    require_service("PostgreSQL", parts.hostname or "127.0.0.1", parts.port or 5432)
    return parts._replace(path="/postgres").geturl()


class ProdStack:
    def __init__(self, upstream_url: str):
        self.redis = RedisServer().start()
        admin = _postgres_admin_url()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {STACK_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {STACK_DB}")
        self.admin_url = admin
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.var = Path(tempfile.mkdtemp(prefix="hc-make-prod-"))
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
        env.update(
            DATABASE_URL=urlsplit(admin)._replace(path=f"/{STACK_DB}").geturl(),
            REDIS_URL=self.redis.url,
            SECRET_KEY=secrets.token_urlsafe(50),
            HOST="127.0.0.1",
            PORT=str(self.port),
            VAR_DIR=str(self.var),
            WEB_PROCESSES="2",
            WRITER_PROCESSES="1",
            UPSTREAM_OPENAI_URL=upstream_url,
            PYTHONUNBUFFERED="1",
        )
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ProdStack":
        self.log_path = self.var / "make-prod.log"
        self.log_file = open(self.log_path, "w")
        # Its own session, so stopping it is one signal to its process group, as Ctrl-C does.
        self.proc = subprocess.Popen(["make", "prod"], cwd=ROOT, env=self.env, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"make prod exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                if get(self.url, "/readyz")[0] == 200 and len(self.web_pids()) == 2:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"make prod did not become ready:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def supervisorctl(self, *args: str) -> str:
        return subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", "supervisord.conf", *args],
                              cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=30).stdout

    def processes(self) -> dict[str, tuple[str, int | None]]:
        """supervisorctl status: name -> (state, pid)."""
        out = {}
        for line in self.supervisorctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else None
                out[parts[0]] = (parts[1], pid)
        return out

    def web_pids(self) -> list[int]:
        return [pid for name, (state, pid) in self.processes().items()
                if name.startswith("web:") and state == "RUNNING" and pid]

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def connect(self) -> tuple[http.client.HTTPConnection, int]:
        """A keep-alive connection to the one port, and the daphne process that accepted it."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200
        response.read()
        return conn, connection_owner(self.port, conn.sock.getsockname()[1], self.web_pids())

    def connect_elsewhere(self, not_pid: int) -> tuple[http.client.HTTPConnection, int]:
        for _ in range(40):
            conn, pid = self.connect()
            if pid != not_pid:
                return conn, pid
            conn.close()
        raise AssertionError(f"40 connections in a row were all accepted by process {not_pid}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.log_file.close()
        self.redis.stop()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {STACK_DB} WITH (FORCE)")
        shutil.rmtree(self.var, ignore_errors=True)


@pytest.fixture(scope="module")
def upstream():
    with MockProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def stack(upstream):
    stack = ProdStack(upstream.url)
    try:
        stack.start()
        stack.manage("create_org", "acme", "--name", "Acme", "--owner", "ops@example.org",
                     "--password", "a long password for ops")
        stack.key = stack.manage("create_api_key", "acme", "--name", "app").strip().splitlines()[-1]
        yield stack
    finally:
        stack.close()


def proxied_call(conn: http.client.HTTPConnection, key: str, marker: str = "") -> str:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hello {marker}"}]})
    conn.request("POST", "/oai/v1/chat/completions", body=body, headers={
        "Content-Type": "application/json", "Authorization": "Bearer sk-provider",
        "Helicone-Auth": f"Bearer {key}",
    })
    response = conn.getresponse()
    payload = json.loads(response.read())
    assert response.status == 200, payload
    assert payload["choices"][0]["message"]["content"]
    return response.getheader("helicone-id")


def test_make_prod_runs_two_daphne_processes_a_log_writer_and_the_alert_evaluator(stack):
    processes = stack.processes()
    assert {name: state for name, (state, _pid) in processes.items()} == {
        "web:web-0": "RUNNING", "web:web-1": "RUNNING", "writer:writer-0": "RUNNING", "alerts": "RUNNING",
    }
    status, _headers, body = get(stack.url, "/readyz")
    assert status == 200
    assert json.loads(body)["checks"] == {"database": "ok", "redis": "ok"}


def test_both_daphne_processes_take_connections_on_the_one_port(stack):
    # Open connections, held, until both processes have accepted one (at most 64): which process
    # the kernel hands each one to is not ours to choose, and 16 once all went to one of them.
    connections = []
    while len(connections) < 64 and len({pid for _conn, pid in connections}) < len(stack.web_pids()):
        connections.append(stack.connect())
    owners = [pid for _conn, pid in connections]
    for conn, _pid in connections:
        conn.close()
    counts = {pid: owners.count(pid) for pid in set(owners)}
    assert set(counts) == set(stack.web_pids()), counts


def test_a_request_served_by_one_daphne_reaches_a_websocket_on_the_other(stack, upstream):
    marker = uuid.uuid4().hex

    async def scenario() -> tuple[int, int, str, dict]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://127.0.0.1:{stack.port}/ws/orgs/acme/live/",
                                          headers={"Authorization": f"Bearer {stack.key}"}) as ws:
                ws_pid = await asyncio.to_thread(connection_owner, stack.port, ws.get_extra_info("sockname")[1],
                                                 stack.web_pids())
                conn, http_pid = await asyncio.to_thread(stack.connect_elsewhere, ws_pid)
                log_id = await asyncio.to_thread(proxied_call, conn, stack.key, marker)
                conn.close()
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    message = await ws.receive_json(timeout=deadline - time.monotonic())
                    if message.get("id") == log_id:
                        return ws_pid, http_pid, log_id, message
                raise AssertionError(f"no live event for {log_id}")

    ws_pid, http_pid, log_id, event = asyncio.run(scenario())
    assert ws_pid != http_pid
    assert event["type"] == "request" and event["status"] == 200 and event["model"] == "gpt-4o-mini"
    assert any(marker in r["body"] for r in upstream.requests())
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT status FROM analytics_requestlog WHERE id = %s", (log_id,)).fetchone() == (200,)


def test_metrics_scraped_from_one_process_count_a_request_served_by_the_other(stack):
    def served() -> float:
        return sample(metrics_text, "helicone_gateway_requests_total", provider="openai", status="200")

    conn, pid = stack.connect()
    conn.request("GET", "/metrics")
    metrics_text = conn.getresponse().read().decode()
    before = served()
    other, other_pid = stack.connect_elsewhere(pid)
    proxied_call(other, stack.key)
    other.close()
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    metrics_text = response.read().decode()
    conn.close()
    assert response.status == 200
    assert served() == before + 1
    assert sample(metrics_text, "helicone_gateway_request_duration_seconds_count") >= before + 1
    assert "helicone_log_queue_depth" in metrics_text and "helicone_log_writer_lag_seconds" in metrics_text


def test_stopping_make_prod_stops_every_process(stack):
    pids = [pid for _state, pid in stack.processes().values() if pid]
    assert len(pids) == 4
    stack.stop()
    assert stack.proc.returncode is not None
    assert [pid for pid in pids if os.path.exists(f"/proc/{pid}")] == []
    with pytest.raises(OSError):
        get(stack.url, "/healthz")


@pytest.mark.parametrize("missing, env", [
    ("DATABASE_URL=postgres://", {"REDIS_URL": "redis://127.0.0.1:6379/0"}),
    ("DATABASE_URL=postgres://", {"DATABASE_URL": "sqlite:///var/x.sqlite3", "REDIS_URL": "redis://127.0.0.1:6379/0"}),
    ("REDIS_URL=redis://", {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/nowhere"}),
])
def test_make_prod_refuses_to_start_without_postgresql_and_redis(missing, env):
    environ = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    done = subprocess.run(["make", "prod", f"PORT={free_port()}"], cwd=ROOT, env={**environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"make prod: set {missing}" in done.stderr
