"""Helicone's header behaviour through a real daphne, where ours used to differ without meaning to:
header names with `_`, empty optional headers, budgets in fractions of a cent, and
`Helicone-Request-Id` on every answer. (The parser's own cases: test_control_headers.py.)"""

import http.client
import json
import socket
import uuid

import httpx
import pytest

from orgs.models import Organization
from tests.servers import Daphne

from .conftest import wait_for_log
from .test_ratelimit import forget_rate_limit_counters

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]}
CHAT = "/oai/v1/chat/completions"


@pytest.fixture(autouse=True, scope="module")
def _fresh_counters():
    forget_rate_limit_counters()


def post(gateway, tenant, headers=(), json_body=BODY, path=CHAT, raw_key=None) -> httpx.Response:
    sent = [("Helicone-Auth", f"Bearer {raw_key or tenant.raw_key}"), *(headers.items()
                                                                      if isinstance(headers, dict) else headers)]
    return httpx.post(gateway.url + path, headers=sent, json=json_body, timeout=30)


def seen(mock_provider, marker: str) -> list[dict]:
    return [r for r in mock_provider.requests() if r["headers"].get("x-test-marker") == marker]


# --- 1. Header names with `_` ---------------------------------------------------------------------------


def test_a_property_with_underscore_reaches_the_log(gateway, tenant):
    response = post(gateway, tenant, {"Helicone-Property-My_Prop": "x", "Helicone-Property-Plain": "y"})
    assert response.status_code == 200, response.text
    log = wait_for_log(response.headers["helicone-id"])
    assert log.properties == {"My_prop": "x", "Plain": "y"}


def test_a_rate_limit_segment_with_underscore_counts_per_property_value(gateway, tenant):
    def call(tenant_id: str) -> httpx.Response:
        return post(gateway, tenant, {"Helicone-RateLimit-Policy": "1;w=60;s=my-tenant_id",
                                      "Helicone-Property-My-Tenant_id": tenant_id})

    first = call("t1")
    assert first.status_code == 200, first.text  # was: 400 "needs a Helicone-Property-My-Tenant_id header"
    assert first.headers["helicone-ratelimit-policy"] == "1;w=60;u=request;s=My-Tenant_id"
    assert call("t1").status_code == 429, "t1's one request a minute is spent"
    assert call("t2").status_code == 200, "t2 has a budget of its own"


def test_provider_headers_with_underscore_are_forwarded_as_sent(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    response = post(gateway, tenant, [("X-Test-Marker", marker), ("X_Custom_Header", "underscore"),
                                      ("X-Custom-Header", "dash"), ("X_Api_Key", "sk-underscored-secret"),
                                      ("Helicone_Auth", f"Bearer {tenant.raw_key}")])
    assert response.status_code == 200, response.text
    [upstream] = seen(mock_provider, marker)
    assert upstream["headers"]["x_custom_header"] == "underscore"
    assert upstream["headers"]["x-custom-header"] == "dash"
    assert upstream["headers"]["x_api_key"] == "sk-underscored-secret"
    assert not [name for name in upstream["headers"] if name.startswith("helicone")], \
        "a Helicone header is never forwarded, whichever separator its name uses"
    log = wait_for_log(response.headers["helicone-id"])
    # A server that reads `_` as `-` takes these for credentials: the log never keeps them.
    assert log.request_headers["x_api_key"] == "[redacted]"
    assert log.request_headers["helicone_auth"] == "[redacted]"
    assert log.request_headers["x_custom_header"] == "underscore"


@pytest.fixture(scope="module")
def tls_proxied_gateway(django_db_setup, mock_provider):
    """A gateway set up behind a TLS proxy: Django trusts X-Forwarded-Proto and redirects plain HTTP."""
    server = Daphne(UPSTREAM_OPENAI_URL=mock_provider.url, BEHIND_TLS_PROXY="1", SECURE_SSL_REDIRECT="1")
    server.start()
    yield server
    server.stop()


def test_django_pages_still_never_see_underscore_headers(tls_proxied_gateway):
    """The reason daphne drops them: `X_Forwarded_Proto` would become Django's HTTP_X_FORWARDED_PROTO,
    past a proxy that strips only the dashed spelling, and make a plain HTTP request look secure."""
    url = tls_proxied_gateway.url + "/login/"
    assert httpx.get(url).status_code == 301, "plain HTTP is redirected to HTTPS"
    trusted = httpx.get(url, headers={"X-Forwarded-Proto": "https"})
    assert trusted.status_code == 200, "the proxy's own header is trusted"
    smuggled = httpx.get(url, headers={"X_Forwarded_Proto": "https"})
    assert smuggled.status_code == 301 and smuggled.headers["location"].startswith("https://")


# --- 2. An empty optional header means "not set" --------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "spaces"])
def test_an_empty_rate_limit_policy_applies_no_policy(gateway, tenant, value):
    # http.client, not httpx: h11 refuses to send a value of only spaces, which other clients send.
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.request("POST", CHAT, json.dumps(BODY), {
        "Content-Type": "application/json", "Helicone-Auth": f"Bearer {tenant.raw_key}",
        "Helicone-RateLimit-Policy": value})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert not [name for name, _value in response.getheaders() if name.lower().startswith("helicone-ratelimit")]
    connection.close()
    log = wait_for_log(response.getheader("helicone-id"))
    assert log.request_headers["helicone-ratelimit-policy"] == "", "the header did arrive, spaces trimmed"


def test_an_empty_bucket_size_falls_back_to_the_default_bucket(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    headers = {"Helicone-Cache-Enabled": "true", "Helicone-Cache-Bucket-Max-Size": "", "X-Test-Marker": marker}
    body = {**BODY, "messages": [{"role": "user", "content": marker}]}
    first = post(gateway, tenant, headers, body)
    assert first.status_code == 200 and first.headers["helicone-cache"] == "MISS"
    wait_for_log(first.headers["helicone-id"])
    second = post(gateway, tenant, headers, body)
    assert second.status_code == 200 and second.headers["helicone-cache"] == "HIT", "a bucket of one is full"
    assert second.headers["helicone-cache-bucket-idx"] == "0"
    assert len(seen(mock_provider, marker)) == 1


def test_every_other_optional_header_sent_empty_is_ignored(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    empty = ["Helicone-Request-Id", "Helicone-Cache-Enabled", "Helicone-Cache-Seed", "Helicone-Omit-Request",
             "Helicone-Retry-Enabled", "Helicone-Retry-Num", "Helicone-Retry-Factor", "Helicone-Fallback",
             "Helicone-Fallbacks", "Helicone-Prompt-Id", "Helicone-Prompt-Version", "Helicone-Prompt-Variables",
             "Helicone-OpenAI-Api-Base", "Helicone-User-Id", "Helicone-Model-Override"]
    response = post(gateway, tenant, [("X-Test-Marker", marker), *((name, "") for name in empty)])
    assert response.status_code == 200, response.text
    assert str(uuid.UUID(response.headers["helicone-id"])) == response.headers["helicone-id"]
    assert len(seen(mock_provider, marker)) == 1
    log = wait_for_log(response.headers["helicone-id"])
    assert (log.request_body != "", log.retries, log.fallback_index, log.model) == (True, 0, None, "gpt-4o-mini")


@pytest.mark.parametrize("name, value", [
    ("Helicone-RateLimit-Policy", "ten;w=60"),
    ("Helicone-Cache-Bucket-Max-Size", "many"),
    ("Helicone-Request-Id", "not-a-uuid"),
    ("Helicone-Cache-Enabled", "maybe"),
])
def test_a_malformed_value_is_still_a_400_naming_the_header(gateway, tenant, mock_provider, name, value):
    marker = uuid.uuid4().hex
    response = post(gateway, tenant, {name: value, "X-Test-Marker": marker})
    assert response.status_code == 400 and name in response.json()["error"]["message"]
    assert seen(mock_provider, marker) == []


# --- 3. Budgets in fractions of a cent ------------------------------------------------------------------


def test_fractional_cent_policies_are_accepted_and_echoed(gateway, tenant):
    for policy in ("0.5;w=60;u=cents", "0.125;w=3600;u=cents"):
        response = post(gateway, tenant, {"Helicone-RateLimit-Policy": policy})
        assert response.status_code == 200, response.text
        assert response.headers["helicone-ratelimit-policy"] == policy
        assert response.headers["helicone-ratelimit-limit"] == response.headers["helicone-ratelimit-remaining"] \
            == policy.split(";")[0]


def test_a_fraction_of_a_request_or_token_is_refused(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    for policy in ("0.5;w=60", "1.5;w=60;u=token"):
        response = post(gateway, tenant, {"Helicone-RateLimit-Policy": policy, "X-Test-Marker": marker})
        assert response.status_code == 400
        message = response.json()["error"]["message"]
        assert "Helicone-RateLimit-Policy" in message and "u=cents" in message
    assert seen(mock_provider, marker) == []


def test_a_fractional_cent_budget_is_spent_exactly(gateway, tenant):
    """2 prompt + 2000 completion tokens of gpt-4o-mini cost 0.12003 cents. A budget of exactly six
    calls (0.72018 cents) allows six, with the exact rest shown after each, and refuses the seventh:
    summed as floats the six charges come to 0.7201799999999999, and a seventh would slip through."""
    user = uuid.uuid4().hex
    headers = {"Helicone-RateLimit-Policy": "0.72018;w=3600;u=cents;s=user", "Helicone-User-Id": user,
               "X-Mock-Chunks": "2000"}
    remaining = []
    for _ in range(6):
        response = post(gateway, tenant, headers)
        assert response.status_code == 200, response.text
        remaining.append(response.headers["helicone-ratelimit-remaining"])
        wait_for_log(response.headers["helicone-id"])  # its cost is charged once the response is done
    assert remaining == ["0.72018", "0.60015", "0.48012", "0.36009", "0.24006", "0.12003"]
    refused = post(gateway, tenant, headers)
    assert refused.status_code == 429, refused.text
    assert refused.headers["helicone-ratelimit-limit"] == "0.72018"
    assert refused.headers["helicone-ratelimit-remaining"] == "0"
    assert "0.72018;w=3600;u=cents;s=user" in refused.json()["error"]["message"]


def test_an_org_wide_policy_takes_fractional_cents_too(gateway, tenant):
    Organization.objects.filter(pk=tenant.org.pk).update(rate_limit_policy="0.5;w=60;u=cents")
    response = post(gateway, tenant)
    assert response.status_code == 200, response.text
    assert response.headers["helicone-ratelimit-policy"] == "0.5;w=60;u=cents"
    assert response.headers["helicone-ratelimit-remaining"] == "0.5"


# --- 4. Helicone-Request-Id on every response -----------------------------------------------------------


def assert_same_id(response: httpx.Response, expected: str | None = None) -> str:
    ids = response.headers.get_list("helicone-request-id"), response.headers.get_list("helicone-id")
    assert ids[0] == ids[1] and len(ids[0]) == 1, ids
    assert str(uuid.UUID(ids[0][0])) == ids[0][0]
    if expected is not None:
        assert ids[0][0] == expected
    return ids[0][0]


def test_the_clients_own_id_comes_back_in_both_headers(gateway, tenant):
    own = str(uuid.uuid4())
    response = post(gateway, tenant, {"Helicone-Request-Id": own})
    assert response.status_code == 200
    assert_same_id(response, own)
    assert wait_for_log(own).status == 200


def test_a_fresh_id_comes_back_in_both_headers(gateway, tenant):
    first, second = post(gateway, tenant), post(gateway, tenant)
    assert assert_same_id(first) != assert_same_id(second)


def test_provider_errors_and_fallback_successes_carry_the_id(gateway, tenant):
    failed = post(gateway, tenant, {"X-Mock-Status": "500"})
    assert failed.status_code == 500
    assert wait_for_log(assert_same_id(failed)).status == 500
    fell_back = post(gateway, tenant, {"Helicone-Fallback": json.dumps([{"model": "gpt-4o-mini"}])},
                     {**BODY, "model": "mock-fail-503"})
    assert fell_back.status_code == 200 and fell_back.headers["helicone-fallback-index"] == "1"
    assert wait_for_log(assert_same_id(fell_back)).fallback_index == 1


def test_the_gateways_own_answers_carry_the_id(gateway, tenant):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    answers = {
        401: post(gateway, tenant, raw_key="sk-helicone-unknown"),
        400: post(gateway, tenant, {"Helicone-Cache-Enabled": "maybe"}),
        502: post(gateway, tenant, {"Helicone-Target-Url": f"http://127.0.0.1:{closed_port}"},
                  path="/gateway/v1/chat/completions"),
    }
    limited = {"Helicone-RateLimit-Policy": "1;w=60;u=user", "Helicone-User-Id": uuid.uuid4().hex}
    post(gateway, tenant, limited)
    answers[429] = post(gateway, tenant, limited)
    for status, response in answers.items():
        assert response.status_code == status, response.text
        assert_same_id(response)


def test_cache_hits_carry_their_own_id(gateway, tenant):
    headers = {"Helicone-Cache-Enabled": "true"}
    body = {**BODY, "messages": [{"role": "user", "content": uuid.uuid4().hex}]}
    miss = post(gateway, tenant, headers, body)
    wait_for_log(miss.headers["helicone-id"])
    own = str(uuid.uuid4())
    hit = post(gateway, tenant, {**headers, "Helicone-Request-Id": own}, body)
    assert hit.headers["helicone-cache"] == "HIT"
    assert_same_id(hit, own)
    assert assert_same_id(miss) != own
