"""An upstream that resets, hangs, answers garbage or cuts its answer short: the
caller gets a clean 502/504 with a JSON error naming the problem (or, once a
stream has started, a stream that ends), and the log row says what happened."""

import time

import httpx
import pytest

from tests.gateway.conftest import mock_provider, tenant, wait_for_log  # noqa: F401  (fixtures)
from tests.servers import Daphne, unique_stream_key

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(django_db_setup, mock_provider):  # noqa: F811
    """A gateway that gives up on a silent upstream after one second."""
    server = Daphne(UPSTREAM_OPENAI_URL=mock_provider.url, GATEWAY_UPSTREAM_TIMEOUT="1",
                    LOG_STREAM_KEY=unique_stream_key(), LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}")
    server.start()
    yield server
    server.stop()


# (fault, streamed request, status, what the error message names)
CASES = [
    ("reset", False, 502, "upstream closed the connection"),
    ("reset", True, 502, "upstream closed the connection"),
    ("hang", False, 504, "timed out"),
    ("hang", True, 504, "timed out"),
    ("garbage", False, 502, "invalid HTTP response"),
    ("garbage", True, 502, "invalid HTTP response"),
    ("truncate", False, 502, "Upstream response broken"),
]


@pytest.mark.parametrize(("fault", "stream", "status", "named"), CASES,
                         ids=[f"{c[0]}-{'stream' if c[1] else 'plain'}" for c in CASES])
def test_upstream_fault_is_a_clean_gateway_error_and_logged(gateway, tenant, fault, stream, status, named):  # noqa: F811
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Mock-Fault": fault, "X-Mock-Chunks": "8"}
    response = httpx.post(gateway.url + "/oai/v1/chat/completions", json={**BODY, "stream": stream},
                          headers=headers, timeout=30)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert named in error["message"] and error["type"] in ("helicone_upstream_error", "helicone_upstream_timeout")
    log = wait_for_log(response.headers["helicone-id"])
    assert log.status == status and named in log.error
    assert not log.cancelled


def test_truncated_stream_ends_for_the_caller_and_is_logged_as_broken(gateway, tenant):  # noqa: F811
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Mock-Fault": "truncate", "X-Mock-Chunks": "8"}
    with httpx.stream("POST", gateway.url + "/oai/v1/chat/completions", json={**BODY, "stream": True},
                      headers=headers, timeout=30) as response:
        body = response.read()  # the gateway ends its own response cleanly: no read error here
    assert response.status_code == 200 and b"word1" in body and b"[DONE]" not in body
    log = wait_for_log(response.headers["helicone-id"])
    assert log.streamed and log.status == 200
    assert "upstream stream" in log.error and "word1" in log.response_body


def test_a_silent_upstream_after_the_first_chunk_is_a_logged_stream_timeout(gateway, tenant):  # noqa: F811
    # Chunks 2 s apart: past the gateway's 1 s read timeout once the stream has begun.
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Mock-Chunks": "3", "X-Mock-Chunk-Delay-Ms": "2000"}
    response = httpx.post(gateway.url + "/oai/v1/chat/completions", json={**BODY, "stream": True},
                          headers=headers, timeout=30)
    assert response.status_code == 200 and b"[DONE]" not in response.content
    log = wait_for_log(response.headers["helicone-id"])
    assert log.error == "upstream stream timed out"
