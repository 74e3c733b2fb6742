"""/healthz and /readyz on a real daphne: what a load balancer's probes see."""

import json
import time

import pytest

from bench.stack import free_port
from tests.servers import Daphne, unique_stream_key

from .helpers import RedisServer, get

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def own_redis():
    redis = RedisServer().start()
    yield redis
    redis.stop()


@pytest.fixture(scope="module")
def server(django_db_setup, own_redis):
    daphne = Daphne(REDIS_URL=own_redis.url, LOG_STREAM_KEY=unique_stream_key(),
                    LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}").start()
    yield daphne
    daphne.stop()


def test_healthz_answers_without_a_session_for_any_host_name(server):
    # Probes come by IP address and plain HTTP: no ALLOWED_HOSTS check, no redirect, no cookie.
    status, headers, body = get(server.url, "/healthz", {"Host": "10.1.2.3:8000"})
    assert status == 200
    assert json.loads(body) == {"status": "ok"}
    assert "set-cookie" not in headers
    assert get(server.url, "/login/", {"Host": "10.1.2.3:8000"})[0] == 400  # pages still check the host


def test_readyz_reports_the_database_and_redis(server):
    status, _headers, body = get(server.url, "/readyz")
    assert status == 200
    assert json.loads(body) == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_reports_a_stopped_redis_by_name(server, own_redis):
    own_redis.stop()
    status, headers, body = get(server.url, "/readyz")
    assert status == 503
    answer = json.loads(body)
    assert answer["error"] == "Redis is unreachable"
    assert answer["checks"] == {"database": "ok", "redis": "unreachable"}
    assert headers["retry-after"] == "5"
    assert get(server.url, "/healthz")[0] == 200  # the process itself is fine


def test_readyz_reports_an_unreachable_database_by_name():
    daphne = Daphne(DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nowhere").start()
    try:
        status, _headers, body = get(daphne.url, "/readyz")
    finally:
        daphne.stop()
    assert status == 503
    assert json.loads(body)["error"] == "the database is unreachable"


def test_probes_answer_get_only(server):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/healthz", body=b"")
    response = conn.getresponse()
    assert response.status == 405
    assert response.getheader("allow") == "GET, HEAD"
    assert "GET and HEAD only" in json.loads(response.read())["error"]
    conn.close()
