"""Redis unreachable: proxying goes on, the cache misses instead of failing, rate
limits fail open (or closed, when configured), and the logs fall back to a
spool file on disk that is replayed once Redis is back, every record once.

Both gateways reach Redis through a TCP relay the test cuts; the database stays up.
"""

import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from analytics.models import RequestLog
from tests.base import redis_url
from tests.gateway.conftest import mock_provider, tenant, wait_for_log  # noqa: F401  (fixtures)
from tests.servers import ROOT, Daphne, TcpProxy, unique_stream_key

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE_SECONDS = 8


def chat(server: Daphne, raw_key: str, text: str, **headers: str) -> httpx.Response:
    return httpx.post(server.url + "/oai/v1/chat/completions", timeout=30,
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
                      headers={"Helicone-Auth": f"Bearer {raw_key}", **headers})


def spooled_records(spool) -> int:
    return sum(len(path.read_bytes().splitlines()) for path in spool.glob("*.jsonl"))


def test_redis_outage_keeps_proxying_and_spools_every_log(tenant, mock_provider):  # noqa: F811
    parts = urlsplit(redis_url())
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    spool = ROOT / "var" / f"spool-test-{time.time_ns()}"
    env = {"REDIS_URL": f"redis://127.0.0.1:{proxy.port}{parts.path or '/0'}", "UPSTREAM_OPENAI_URL": mock_provider.url,
           "LOG_STREAM_KEY": unique_stream_key(), "LOG_SPOOL_DIR": str(spool)}
    fail_open = Daphne(**env).start()
    fail_closed = Daphne(**env, GATEWAY_RATE_LIMIT_FAIL_CLOSED="1").start()
    user = uuid.uuid4().hex
    limited = {"Helicone-RateLimit-Policy": "5;w=3600;u=user", "Helicone-User-Id": user}
    cached = {"Helicone-Cache-Enabled": "true"}
    prompt = f"cached {user}"
    ids = []

    def sent(response: httpx.Response) -> httpx.Response:
        ids.append(response.headers["helicone-id"])
        return response

    try:
        key = tenant.raw_key
        assert sent(chat(fail_open, key, "limited", **limited)).headers["helicone-ratelimit-remaining"] == "4"
        assert sent(chat(fail_open, key, prompt, **cached)).headers["helicone-cache"] == "MISS"
        for _ in range(50):  # stored in the background after the response
            if sent(chat(fail_open, key, prompt, **cached)).headers["helicone-cache"] == "HIT":
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the cache never answered before the outage")
        for log_id in ids:
            wait_for_log(log_id)

        proxy.pause()
        during = []
        deadline = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < deadline:
            plain = sent(chat(fail_open, key, "plain"))
            hit_or_miss = sent(chat(fail_open, key, prompt, **cached))
            open_limit = sent(chat(fail_open, key, "limited", **limited))
            closed_plain = sent(chat(fail_closed, key, "plain"))
            closed_limit = sent(chat(fail_closed, key, "limited", **limited, **{"X-Test-Marker": user}))
            assert plain.status_code == 200, plain.text
            assert hit_or_miss.status_code == 200 and hit_or_miss.headers["helicone-cache"] == "MISS"
            assert open_limit.status_code == 200
            assert open_limit.headers["helicone-ratelimit-status"] == "unavailable"
            assert closed_plain.status_code == 200, "a request without a rate limit needs no Redis"
            assert closed_limit.status_code == 503
            assert "Rate limits cannot be checked" in closed_limit.json()["error"]["message"]
            assert closed_limit.json()["error"]["type"] == "helicone_rate_limit_unavailable"
            assert closed_limit.headers["helicone-ratelimit-status"] == "unavailable"
            during += [r.headers["helicone-id"] for r in (plain, hit_or_miss, open_limit, closed_plain, closed_limit)]
            time.sleep(0.1)
        assert not [r for r in mock_provider.requests() if r["headers"].get("x-test-marker") == user], \
            "fail-closed never calls the provider"
        time.sleep(1)  # the last records reach the spool
        assert spooled_records(spool) == len(during), "every record of the outage is on disk"
        assert not RequestLog.objects.filter(id__in=during).exists()

        proxy.resume()
        for log_id in ids:
            wait_for_log(log_id, timeout=60)
        assert RequestLog.objects.filter(org=tenant.org).count() == len(ids) == len(set(ids))
        for _ in range(100):  # the replayed file is deleted right after its last rows are committed
            if not list(spool.glob("*.jsonl")):
                break
            time.sleep(0.1)
        assert spooled_records(spool) == 0, "the spool is emptied once replayed"
        for _ in range(50):  # Redis is skipped for a second after a failure
            response = sent(chat(fail_open, key, "limited", **limited))
            if "helicone-ratelimit-status" not in response.headers:
                break
            time.sleep(0.1)
        # Counted again from where it was: nothing was counted while Redis was away.
        assert response.headers["helicone-ratelimit-remaining"] == "3"
        assert sent(chat(fail_open, key, prompt, **cached)).headers["helicone-cache"] == "HIT"
        assert sent(chat(fail_closed, key, "limited", **limited)).headers["helicone-ratelimit-remaining"] == "2"
        for log_id in ids:
            wait_for_log(log_id, timeout=30)
        assert RequestLog.objects.filter(org=tenant.org).count() == len(ids)
    finally:
        fail_open.stop()
        fail_closed.stop()
        proxy.stop()
