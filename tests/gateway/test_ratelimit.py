"""Rate limits through the official SDK: header and org-wide policies, token and cents units, Redis down."""

import time
import uuid

import openai
import pytest

from orgs.models import Organization

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "count me"}]


@pytest.fixture(autouse=True, scope="module")
def _fresh_counters():
    """Test databases are recreated on every run, so org ids repeat: forget counters of earlier runs."""
    forget_rate_limit_counters()


def forget_rate_limit_counters() -> None:
    import os

    import redis

    if os.environ.get("REDIS_URL"):
        connection = redis.Redis.from_url(os.environ["REDIS_URL"])
        keys = list(connection.scan_iter("hc:rl:*", count=1000))
        if keys:
            connection.delete(*keys)


def client(url: str, raw_key: str, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/oai/v1", api_key="sk-provider",
                         default_headers={"Helicone-Auth": f"Bearer {raw_key}", **headers}, max_retries=0)


def marked(mock_provider, marker: str) -> int:
    return sum(1 for r in mock_provider.requests() if r["headers"].get("x-test-marker") == marker)


def test_third_request_of_three_is_the_last_allowed(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    c = client(gateway.url, tenant.raw_key, **{"Helicone-RateLimit-Policy": "3;w=3600;u=user",
                                                "Helicone-User-Id": marker, "X-Test-Marker": marker})
    remaining = []
    for _ in range(3):
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        remaining.append(raw.headers["helicone-ratelimit-remaining"])
        assert raw.headers["helicone-ratelimit-limit"] == "3"
        assert raw.headers["helicone-ratelimit-policy"] == "3;w=3600;u=request;s=user"
    assert remaining == ["2", "1", "0"]

    with pytest.raises(openai.RateLimitError) as info:
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    response = info.value.response
    assert response.json()["error"]["type"] == "helicone_rate_limit_exceeded"
    assert response.headers["helicone-ratelimit-remaining"] == "0"
    assert response.headers["helicone-ratelimit-policy"] == "3;w=3600;u=request;s=user"
    assert 0 < int(response.headers["helicone-ratelimit-reset"]) <= 3600
    assert response.headers["retry-after"] == response.headers["helicone-ratelimit-reset"]
    assert marked(mock_provider, marker) == 3, "a refused request never reaches the provider"
    log = wait_for_log(response.headers["helicone-id"])
    assert log.status == 429 and "Rate limit exceeded" in log.error and log.user_id == marker

    # Another user has a budget of their own.
    other = client(gateway.url, tenant.raw_key, **{"Helicone-RateLimit-Policy": "3;w=3600;u=user",
                                                    "Helicone-User-Id": marker + "-2"})
    assert other.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).status_code == 200


def test_property_segment_and_tightest_policy(gateway, tenant):
    feature = uuid.uuid4().hex
    headers = {"Helicone-RateLimit-Policy": "100;w=3600, 2;w=3600;s=Feature",
               "Helicone-Property-Feature": feature}
    c = client(gateway.url, tenant.raw_key, **headers)
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert (raw.headers["helicone-ratelimit-limit"], raw.headers["helicone-ratelimit-remaining"]) == ("2", "1")
    c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as info:
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.response.headers["helicone-ratelimit-policy"] == "2;w=3600;u=request;s=Feature"
    other = client(gateway.url, tenant.raw_key, **{**headers, "Helicone-Property-Feature": feature + "-b"})
    assert other.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).status_code == 200


def test_invalid_policy_is_a_400_naming_the_header(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    for policy, extra in (("ten;w=60", {}), ("10;w=60;u=bytes", {}), ("10;w=60;s=user", {})):
        with pytest.raises(openai.BadRequestError) as info:
            client(gateway.url, tenant.raw_key, **{"Helicone-RateLimit-Policy": policy, "X-Test-Marker": marker},
                   **extra).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert "Helicone-RateLimit-Policy" in info.value.response.json()["error"]["message"]
    assert marked(mock_provider, marker) == 0


def until_refused(c, attempts: int = 40, **kwargs) -> tuple[int, openai.RateLimitError]:
    """Token and cents usage is charged after the response, in the background."""
    allowed = 0
    for _ in range(attempts):
        try:
            c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kwargs)
        except openai.RateLimitError as error:
            return allowed, error
        allowed += 1
        time.sleep(0.1)
    raise AssertionError("never refused")


def test_token_budget_is_charged_with_real_usage(gateway, tenant):
    user = uuid.uuid4().hex
    # 2 prompt + 5 completion tokens a call: the second call spends the budget of 10.
    c = client(gateway.url, tenant.raw_key, **{"Helicone-RateLimit-Policy": "10;w=3600;u=token;s=user",
                                                "Helicone-User-Id": user})
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["helicone-ratelimit-remaining"] == "10", "nothing is charged before the response"
    allowed, error = until_refused(c)
    assert allowed >= 1
    assert error.response.headers["helicone-ratelimit-policy"] == "10;w=3600;u=token;s=user"


def test_cents_budget_is_charged_with_real_cost(gateway, tenant):
    user = uuid.uuid4().hex
    # 3000 completion tokens of gpt-4o-mini at $0.60 per million: 0.18 cents a call.
    c = client(gateway.url, tenant.raw_key, **{"Helicone-RateLimit-Policy": "1;w=3600;u=cents;s=user",
                                                "Helicone-User-Id": user, "X-Mock-Chunks": "3000"})
    allowed, error = until_refused(c)
    assert allowed >= 6, "1 cent buys at least 5 calls of 0.18 cents"
    assert error.response.headers["helicone-ratelimit-limit"] == "1"


def test_org_wide_policy_applies_on_top_of_the_header(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    Organization.objects.filter(pk=tenant.org.pk).update(rate_limit_policy="2;w=3600")
    c = client(gateway.url, tenant.raw_key, **{"X-Test-Marker": marker})
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["helicone-ratelimit-remaining"] == "1"
    with_header = client(gateway.url, tenant.raw_key, **{"X-Test-Marker": marker,
                                                          "Helicone-RateLimit-Policy": "100;w=60"})
    raw = with_header.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["helicone-ratelimit-policy"] == "2;w=3600;u=request"  # the tightest
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert marked(mock_provider, marker) == 2
    # Another org is not limited.
    other = client(gateway.url, tenant.other_raw_key)
    assert "helicone-ratelimit-limit" not in other.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES).headers
