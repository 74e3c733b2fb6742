"""Real processes for end-to-end tests: daphne serving the project, log writers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from django.db import connection

from bench.stack import free_port, wait_for_port  # noqa: F401  (also used by test modules)

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """A URL for the database the test run created, for child processes."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        DEBUG="1",
        GATEWAY_ALLOW_PRIVATE_TARGETS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Daphne:
    """`daphne heliconeproj.asgi:application` on a free port, as users run it."""

    def __init__(self, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ROOT / "var" / f"daphne-test-{self.port}.log"
        self.env = child_env(**env)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daphne":
        self.log_path.parent.mkdir(exist_ok=True)
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "heliconeproj.asgi:application"],
            cwd=ROOT, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.proc, timeout=20.0)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()

    def output(self) -> str:
        return self.log_path.read_text()


def unique_stream_key() -> str:
    return f"hc:logs:test-{uuid.uuid4().hex[:10]}"


class TcpProxy:
    """A TCP relay the test can cut: pause() drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int):
        import asyncio
        import threading

        self.target = (target_host, target_port)
        self.port = free_port()
        self.paused = False
        self.loop = asyncio.new_event_loop()
        self.writers: set = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "TcpProxy":
        import asyncio

        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", self.port), self.loop
        ).result()
        return self

    async def _client(self, reader, writer):
        import asyncio

        if self.paused:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def pause(self) -> None:
        def cut():
            self.paused = True
            for w in list(self.writers):
                w.transport.abort()
            self.writers.clear()

        self.loop.call_soon_threadsafe(cut)

    def resume(self) -> None:
        self.loop.call_soon_threadsafe(setattr, self, "paused", False)

    def stop(self) -> None:
        self.pause()
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


def node_project(directory: Path, name: str, packages: dict[str, str], script: str) -> Path:
    """An npm project of `packages` in `directory` (installed once, again when the list changes) with
    `script` as app.js; skips the test, saying why, where node or npm cannot install them."""
    import json
    import shutil

    import pytest

    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are not installed")
    directory.mkdir(parents=True, exist_ok=True)
    package = {"name": name, "private": True, "dependencies": packages}
    manifest = directory / "package.json"
    installed = all((directory / "node_modules" / package_name / "package.json").exists() for package_name in packages)
    if not installed or not manifest.exists() or json.loads(manifest.read_text()) != package:
        manifest.write_text(json.dumps(package))
        wanted = ", ".join(packages)
        try:
            result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory,
                                    capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm could not install {wanted} within 5 minutes")
        if result.returncode != 0:
            pytest.skip(f"npm could not install {wanted}: {result.stderr.strip()[-500:]}")
    app = directory / "app.js"
    app.write_text(script)
    return app


def proxy_calls(base_url: str, raw_key: str, n: int, timeout: float = 10) -> list[str]:
    """n chat completions through the gateway at base_url (the mock answers); their Helicone-Ids."""
    ids = []
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        for i in range(n):
            response = client.post("/oai/v1/chat/completions",
                                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hi {i}"}]},
                                   headers={"Helicone-Auth": f"Bearer {raw_key}", "Authorization": "Bearer sk-x"})
            assert response.status_code == 200, response.text
            ids.append(response.headers["helicone-id"])
    return ids


_clickhouse = None


def clickhouse_server():
    """One real ClickHouse server (chdb-core, bench/clickhouse_server.py) for the whole test run,
    started on first use, with a data directory of its own; stopped when the run ends."""
    global _clickhouse
    if _clickhouse is None:
        import atexit
        import tempfile

        from bench.clickhouse_server import ClickHouseServer

        directory = Path(tempfile.mkdtemp(prefix="clickhouse-test-"))
        _clickhouse = ClickHouseServer(directory, free_port(), free_port()).start()
        atexit.register(_clickhouse.stop)
    return _clickhouse
