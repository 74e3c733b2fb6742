"""A client that disconnects mid-stream is logged as cancelled (outages and restarts: tests/reliability)."""

import time
import uuid

import httpx
import pytest


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
