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
