"""The hot path never waits on the database: outages and disconnects lose no log."""

import time
import uuid

import httpx
import pytest
from django.db import connection

from analytics.models import RequestLog
from tests.servers import Daphne, TcpProxy

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_client_disconnect_mid_stream_is_logged_as_cancelled(gateway, tenant):
    request_id = str(uuid.uuid4())
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", "Helicone-Request-Id": request_id,
               "X-Mock-Chunks": "100", "X-Mock-Chunk-Delay-Ms": "50"}
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", gateway.url + "/oai/v1/chat/completions",
                           json={**BODY, "stream": True}, headers=headers) as response:
            received = b""
            for chunk in response.iter_bytes():
                received += chunk
                if received.count(b"data:") >= 3:
                    break
    started = time.monotonic()
    log = wait_for_log(request_id)
    assert log.cancelled and log.streamed
    assert "disconnect" in log.error
    assert log.response_body, "what had arrived is kept"
    # Logged promptly, long before the 5 s the upstream stream would have taken.
    assert time.monotonic() - started < 4


@pytest.fixture
def pg_proxy(transactional_db):
    """A cuttable TCP path to PostgreSQL (None on SQLite, whose outage is a held write lock)."""
    if connection.vendor != "postgresql":
        yield None
        return
    settings = connection.settings_dict
    proxy = TcpProxy(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)).start()
    yield proxy
    proxy.stop()


def test_requests_succeed_while_database_is_down_and_every_log_lands_once(pg_proxy, tenant, mock_provider, gateway):
    if pg_proxy is None:
        return _sqlite_locked_for_writes(tenant, gateway)
    from tests.servers import test_database_url

    db_url = test_database_url().replace(f":{connection.settings_dict['PORT'] or 5432}/", f":{pg_proxy.port}/")
    server = Daphne(DATABASE_URL=db_url, UPSTREAM_OPENAI_URL=mock_provider.url, DATABASE_CONN_MAX_AGE="0",
                    LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}")
    server.start()
    try:
        headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            assert client.post("/oai/v1/chat/completions", json=BODY).status_code == 200  # key now cached
            pg_proxy.pause()
            ids = []
            deadline = time.monotonic() + 6  # longer than the key cache lifetime
            while time.monotonic() < deadline:
                response = client.post("/oai/v1/chat/completions", json=BODY)
                assert response.status_code == 200, response.text
                ids.append(response.headers["helicone-id"])
                time.sleep(0.2)
            assert not RequestLog.objects.filter(id__in=ids).exists()
            pg_proxy.resume()
            for log_id in ids:
                wait_for_log(log_id, timeout=30)
        assert RequestLog.objects.filter(id__in=ids).count() == len(ids) >= 20
    finally:
        server.stop()


def test_graceful_shutdown_flushes_every_queued_log(tenant, mock_provider, settings):
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from tests.servers import ROOT, child_env, unique_stream_key

    stream = unique_stream_key()
    server = Daphne(UPSTREAM_OPENAI_URL=mock_provider.url, LOG_STREAM_KEY=stream,
                    LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}")
    server.start()
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}"}

    def call(_):
        return httpx.post(server.url + "/oai/v1/chat/completions", json=BODY, headers=headers,
                          timeout=30).headers["helicone-id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(call, range(40)))
    server.stop()  # SIGTERM right after the last response
    assert server.proc.returncode == 0, server.output()
    writer = None
    if settings.REDIS_URL:  # what the process handed to the stream is written by any writer
        writer = subprocess.Popen([sys.executable, "manage.py", "run_log_writer"], cwd=ROOT,
                                  env=child_env(LOG_STREAM_KEY=stream), stdout=subprocess.DEVNULL)
    try:
        for log_id in ids:
            wait_for_log(log_id, timeout=20)
    finally:
        if writer is not None:
            writer.terminate()
            writer.wait(20)
    assert RequestLog.objects.filter(id__in=ids).count() == 40


def _sqlite_locked_for_writes(tenant, gateway) -> None:
    """Embedded setup: the log writer cannot write while another process holds the
    SQLite write lock; requests go on and every log lands once the lock is gone."""
    import sqlite3

    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        assert client.post("/oai/v1/chat/completions", json=BODY).status_code == 200
        locker = sqlite3.connect(connection.settings_dict["NAME"], timeout=1, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # holds the write lock: every insert waits
        ids = []
        try:
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                response = client.post("/oai/v1/chat/completions", json=BODY)
                assert response.status_code == 200, response.text
                ids.append(response.headers["helicone-id"])
                time.sleep(0.1)
            assert not RequestLog.objects.filter(id__in=ids).exists()
        finally:
            locker.execute("COMMIT")
            locker.close()
        for log_id in ids:
            wait_for_log(log_id, timeout=30)
    assert RequestLog.objects.filter(id__in=ids).count() == len(ids) >= 20
