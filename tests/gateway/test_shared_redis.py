"""Two gateway processes sharing one Redis: one cache, exact rate limits across both."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.base import redis_url
from tests.servers import Daphne, unique_stream_key

from .test_ratelimit import forget_rate_limit_counters

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "shared between processes"}]


@pytest.fixture(scope="module")
def gateways(django_db_setup, django_db_blocker, mock_provider):
    url = redis_url()
    forget_rate_limit_counters()
    stream = unique_stream_key()
    servers = [
        Daphne(REDIS_URL=url, UPSTREAM_OPENAI_URL=mock_provider.url, LOG_STREAM_KEY=stream,
               LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}").start()
        for _ in range(2)
    ]
    yield servers
    for server in servers:
        server.stop()


def client(server, raw_key: str, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/oai/v1", api_key="sk-provider",
                         default_headers={"Helicone-Auth": f"Bearer {raw_key}", **headers}, max_retries=0)


def test_an_entry_cached_by_one_process_is_a_hit_on_the_other(gateways, tenant, mock_provider):
    marker = uuid.uuid4().hex
    messages = [{"role": "user", "content": f"cache {marker}"}]
    first = client(gateways[0], tenant.raw_key, **{"Helicone-Cache-Enabled": "true"}) \
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    assert first.headers["helicone-cache"] == "MISS"
    reader = client(gateways[1], tenant.raw_key, **{"Helicone-Cache-Read": "true"})
    for _ in range(50):  # stored in the background after the first response
        hit = reader.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
        if hit.headers["helicone-cache"] == "HIT":
            break
        time.sleep(0.1)
    assert hit.headers["helicone-cache-hit"] == "true"
    assert hit.parse().id == first.parse().id


def test_a_limit_of_ten_holds_exactly_under_thirty_concurrent_requests(gateways, tenant, mock_provider):
    marker = uuid.uuid4().hex
    headers = {"Helicone-RateLimit-Policy": "10;w=3600;u=user", "Helicone-User-Id": marker,
               "X-Test-Marker": marker}
    clients = [client(server, tenant.raw_key, **headers) for server in gateways]
    # Warm the key cache of both processes so every request below races on the counter alone.
    for server in gateways:
        client(server, tenant.raw_key).models.list()

    def call(i: int) -> int:
        try:
            return clients[i % 2].chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES).status_code
        except openai.RateLimitError as error:
            assert error.response.headers["helicone-ratelimit-remaining"] == "0"
            return error.response.status_code

    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(call, range(30)))
    assert sorted(statuses) == [200] * 10 + [429] * 20
    assert sum(1 for r in mock_provider.requests() if r["headers"].get("x-test-marker") == marker) == 10


def test_redis_cut_while_running_fails_open_then_counts_again(tenant, mock_provider):
    from urllib.parse import urlsplit

    from tests.servers import TcpProxy

    parts = urlsplit(redis_url())
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    server = Daphne(REDIS_URL=f"redis://127.0.0.1:{proxy.port}{parts.path or '/0'}", UPSTREAM_OPENAI_URL=mock_provider.url,
                    LOG_STREAM_KEY=unique_stream_key(), LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}").start()
    try:
        user = uuid.uuid4().hex
        c = client(server, tenant.raw_key, **{"Helicone-RateLimit-Policy": "5;w=3600;u=user", "Helicone-User-Id": user,
                                              "Helicone-Cache-Enabled": "true"})
        create = lambda: c.chat.completions.with_raw_response.create(  # noqa: E731
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"cut {user}"}])
        assert create().headers["helicone-ratelimit-remaining"] == "4"
        proxy.pause()
        raw = create()  # neither the counters nor the cache answer: allowed, and a miss rather than an error
        assert raw.status_code == 200 and raw.headers["helicone-ratelimit-status"] == "unavailable"
        assert raw.headers["helicone-cache"] == "MISS"
        proxy.resume()
        for _ in range(50):  # Redis is skipped for a second after a failure
            raw = create()
            if "helicone-ratelimit-status" not in raw.headers:
                break
            time.sleep(0.1)
        assert int(raw.headers["helicone-ratelimit-remaining"]) == 3
    finally:
        server.stop()
        proxy.stop()
