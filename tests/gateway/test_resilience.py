"""Client disconnects and graceful shutdown lose no log (the database outage: tests/reliability)."""

import time
import uuid

import httpx
import pytest

from analytics.models import RequestLog
from tests.servers import Daphne

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
