"""The database unreachable for 30 s under steady traffic: every request is still
served, and once the database is back every log lands, exactly once.

PostgreSQL (scaled): the gateway (and, with Redis, its `run_log_writer`) reach
the database through a TCP relay that the test cuts. SQLite (embedded): another
process holds the write lock for 30 s, so the in-process writer cannot write.
"""

import os
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
from django.db import connection

from analytics.models import RequestLog
from tests.gateway.conftest import mock_provider, tenant, wait_for_log  # noqa: F401  (fixtures)
from tests.servers import ROOT, Daphne, TcpProxy, child_env, unique_stream_key
from tests.servers import test_database_url as database_url

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE_SECONDS = 30
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "while the database is away"}]}


class SteadyTraffic(threading.Thread):
    """Plain and streamed requests, alternately, every third through the semantic cache, at a steady
    rate until stopped."""

    def __init__(self, url: str, raw_key: str, per_second: float = 8.0):
        super().__init__(daemon=True)
        self.url, self.raw_key, self.interval = url, raw_key, 1 / per_second
        self.sent: list[tuple[float, int, str, bool]] = []  # (when, status, helicone id, complete)
        self.stopping = threading.Event()

    def run(self) -> None:
        headers = {"Helicone-Auth": f"Bearer {self.raw_key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            i = 0
            while not self.stopping.is_set():
                began = time.monotonic()
                stream = i % 2 == 1
                body, headers = {**BODY, "stream": stream}, {}
                if i % 3 == 2:  # the semantic cache reads and writes the database too: it must not stall
                    body["messages"] = [{"role": "user", "content": f"while the database is away, ticket {i}"}]
                    headers = {"Helicone-Cache-Enabled": "true", "Helicone-Cache-Semantic": "true"}
                response = client.post("/oai/v1/chat/completions", json=body, headers=headers)
                complete = b"[DONE]" in response.content if stream else "choices" in response.text
                self.sent.append((began, response.status_code, response.headers.get("helicone-id", ""), complete))
                i += 1
                self.stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def stop(self) -> list[tuple[float, int, str, bool]]:
        self.stopping.set()
        self.join(60)
        return self.sent


@contextmanager
def database_path(extra_env: dict):
    """(daphne env, cut, restore) for this database: a relay for PostgreSQL, a lock for SQLite."""
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)).start()
        url = database_url().replace(f":{db['PORT'] or 5432}/", f":{proxy.port}/")
        try:
            yield dict(extra_env, DATABASE_URL=url, DATABASE_CONN_MAX_AGE="0"), proxy.pause, proxy.resume
        finally:
            proxy.stop()
        return
    locker = sqlite3.connect(connection.settings_dict["NAME"], timeout=5, isolation_level=None)

    def cut():
        locker.execute("BEGIN IMMEDIATE")  # holds the write lock: every insert waits

    def restore():
        locker.execute("COMMIT")

    try:
        yield extra_env, cut, restore
    finally:
        if locker.in_transaction:
            locker.execute("COMMIT")
        locker.close()


def test_thirty_seconds_without_the_database_lose_no_request_and_no_log(tenant, mock_provider):  # noqa: F811
    env = {"UPSTREAM_OPENAI_URL": mock_provider.url, "LOG_STREAM_KEY": unique_stream_key(),
           "LOG_SPOOL_DIR": f"var/spool-test-{time.time_ns()}"}
    # Scaled: the logs go through the Redis stream to a separate run_log_writer (as deployed).
    scaled = connection.vendor == "postgresql" and bool(os.environ.get("REDIS_URL"))  # inherited by children
    if scaled:
        env["LOG_WRITER_IN_PROCESS"] = "0"
    with database_path(env) as (daphne_env, cut, restore):
        server = Daphne(**daphne_env).start()
        writer = None
        if scaled:
            writer = subprocess.Popen([sys.executable, "manage.py", "run_log_writer"], cwd=ROOT,
                                      env=child_env(**daphne_env), stdout=subprocess.DEVNULL)
        traffic = SteadyTraffic(server.url, tenant.raw_key)
        try:
            warm = httpx.post(server.url + "/oai/v1/chat/completions", json=BODY, timeout=30,
                              headers={"Helicone-Auth": f"Bearer {tenant.raw_key}"})
            assert warm.status_code == 200, warm.text  # the key is known before the outage
            traffic.start()
            time.sleep(2)
            cut()
            outage_began = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            during = [s for s in traffic.sent if s[0] >= outage_began + 1]
            assert not RequestLog.objects.filter(id__in=[s[2] for s in during]).exists(), \
                "the database was reachable after all"
            restore()
            time.sleep(3)
            sent = traffic.stop()
            assert len(during) >= OUTAGE_SECONDS * 4, "traffic was not steady through the outage"
            assert [s for s in sent if s[1] != 200 or not s[3]] == [], "a request failed during the outage"
            ids = [warm.headers["helicone-id"]] + [s[2] for s in sent]
            for log_id in ids:
                wait_for_log(log_id, timeout=90)
            # Exactly one row per request: nothing lost, nothing written twice.
            assert RequestLog.objects.filter(org=tenant.org).count() == len(ids) == len(set(ids))
        finally:
            traffic.stop()
            server.stop()
            if writer is not None:
                writer.terminate()
                writer.wait(30)
