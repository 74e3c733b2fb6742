"""/metrics on a real daphne: what the gateway counts, scraped the way Prometheus does."""

import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.servers import ROOT, Daphne, child_env, unique_stream_key

from .helpers import RedisServer, sample

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-for-tests"


@pytest.fixture(scope="module")
def server(django_db_setup, mock_provider):
    daphne = Daphne(UPSTREAM_OPENAI_URL=mock_provider.url, METRICS_TOKEN=TOKEN, LOG_STREAM_KEY=unique_stream_key(),
                    LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}").start()
    yield daphne
    daphne.stop()


def scrape(server, token: str | None = TOKEN) -> str:
    response = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


def chat(server, raw_key: str, **headers) -> httpx.Response:
    return httpx.post(
        server.url + "/oai/v1/chat/completions", timeout=15,
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]},
        headers={"Helicone-Auth": f"Bearer {raw_key}", "Authorization": "Bearer sk-provider", **headers},
    )


def test_metrics_need_the_token_when_one_is_set(server):
    assert httpx.get(server.url + "/metrics").status_code == 401
    wrong = httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert "METRICS_TOKEN" in wrong.json()["error"]
    assert "set-cookie" not in wrong.headers


def test_a_proxied_request_is_counted_with_its_latency(server, tenant):
    before = scrape(server)
    assert chat(server, tenant.raw_key).status_code == 200
    assert chat(server, "sk-helicone-wrong").status_code == 401
    after = scrape(server)
    ok = {"provider": "openai", "status": "200"}
    assert sample(after, "helicone_gateway_requests_total", **ok) == sample(before, "helicone_gateway_requests_total",
                                                                            **ok) + 1
    refused = {"provider": "unknown", "status": "401"}
    assert sample(after, "helicone_gateway_requests_total", **refused) == sample(
        before, "helicone_gateway_requests_total", **refused) + 1
    count = "helicone_gateway_request_duration_seconds_count"
    assert sample(after, count) == sample(before, count) + 2
    assert sample(after, "helicone_gateway_request_duration_seconds_bucket", le="+Inf") == sample(after, count)


def test_cache_hits_and_misses_are_counted(server, tenant):
    marker = {"Helicone-Cache-Enabled": "true", "Helicone-Cache-Seed": uuid.uuid4().hex}
    before = scrape(server)
    assert chat(server, tenant.raw_key, **marker).headers["helicone-cache"] == "MISS"
    for _ in range(50):  # stored in the background after the first answer
        response = chat(server, tenant.raw_key, **marker)
        if response.headers["helicone-cache"] == "HIT":
            break
        time.sleep(0.1)
    assert response.headers["helicone-cache"] == "HIT"
    after = scrape(server)
    misses = sample(after, "helicone_gateway_cache_lookups_total", result="miss") - sample(
        before, "helicone_gateway_cache_lookups_total", result="miss")
    assert sample(after, "helicone_gateway_cache_lookups_total", result="hit") == sample(
        before, "helicone_gateway_cache_lookups_total", result="hit") + 1
    assert misses >= 1


def test_rate_limit_refusals_are_counted(server, tenant):
    headers = {"Helicone-RateLimit-Policy": "1;w=600;u=user", "Helicone-User-Id": uuid.uuid4().hex}
    before = scrape(server)
    assert chat(server, tenant.raw_key, **headers).status_code == 200
    assert chat(server, tenant.raw_key, **headers).status_code == 429
    after = scrape(server)
    name = "helicone_gateway_rate_limit_refusals_total"
    assert sample(after, name) == sample(before, name) + 1


def test_a_stalled_log_writer_shows_as_queue_depth_and_lag_until_a_writer_catches_up(tenant, mock_provider):
    redis = RedisServer().start()
    env = dict(REDIS_URL=redis.url, LOG_STREAM_KEY=unique_stream_key(), LOG_WRITER_IN_PROCESS="0",
               LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}")
    daphne = Daphne(UPSTREAM_OPENAI_URL=mock_provider.url, **env).start()
    writer = None
    try:
        assert chat(daphne, tenant.raw_key).status_code == 200
        time.sleep(1.5)  # nobody writes the log: it waits in the stream (margin for a busy machine)
        stalled = scrape(daphne, token=None)
        assert sample(stalled, "helicone_log_queue_depth") == 1
        assert sample(stalled, "helicone_log_writer_lag_seconds") >= 1
        writer = subprocess.Popen([sys.executable, "manage.py", "run_log_writer"], cwd=ROOT, env=child_env(**env),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        caught_up = scrape(daphne, token=None)
        while sample(caught_up, "helicone_log_queue_depth") and time.monotonic() < deadline:
            time.sleep(0.2)
            caught_up = scrape(daphne, token=None)
        assert sample(caught_up, "helicone_log_queue_depth") == 0
        assert sample(caught_up, "helicone_log_writer_lag_seconds") == 0
    finally:
        if writer is not None:
            writer.terminate()
            writer.wait(30)
        daphne.stop()
        redis.stop()
