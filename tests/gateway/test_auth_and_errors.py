"""Gateway auth, our own errors, and what never reaches the upstream.

Malformed headers, bodies, paths and sizes: tests/reliability/test_bad_input.py."""

import socket
import time

import httpx
import pytest
from django.utils import timezone

from orgs.models import ApiKey
from tests.servers import Daphne

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def post(gateway, headers, json=BODY, path="/oai/v1/chat/completions", **kw):
    return httpx.post(gateway.url + path, headers=headers, json=json, timeout=30, **kw)


@pytest.mark.parametrize(
    "headers, message",
    [
        ({}, "Missing Helicone-Auth"),
        ({"Helicone-Auth": "sk-helicone-abc"}, "Malformed Helicone-Auth"),
        ({"Helicone-Auth": "Bearer sk-helicone-unknown"}, "Invalid or revoked"),
        ({"Helicone-Auth": "Bearer not-even-our-format"}, "Invalid or revoked"),
    ],
)
def test_auth_failures_are_401_and_never_reach_upstream(gateway, tenant, mock_provider, headers, message):
    mock_provider.reset()
    response = post(gateway, headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "helicone_auth_error"
    assert message in response.json()["error"]["message"]
    assert mock_provider.requests() == []


def test_key_without_proxy_scope_is_refused(gateway, tenant, mock_provider):
    _, raw = ApiKey.generate(tenant.org, "read only", ["read"])
    mock_provider.reset()
    response = post(gateway, {"Helicone-Auth": f"Bearer {raw}"})
    assert response.status_code == 403 and "proxy" in response.json()["error"]["message"]
    assert mock_provider.requests() == []


def test_revoked_key_stops_working_within_five_seconds(gateway, tenant):
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}"}
    assert post(gateway, headers).status_code == 200
    ApiKey.objects.filter(id=tenant.key.id).update(revoked_at=timezone.now())
    revoked_at = time.monotonic()
    while post(gateway, headers).status_code == 200:
        assert time.monotonic() - revoked_at < 5, "revoked key still accepted after 5 s"
        time.sleep(0.2)
    assert post(gateway, headers).status_code == 401


def test_generic_route_without_target_url_is_400(gateway, tenant):
    response = post(gateway, {"Helicone-Auth": f"Bearer {tenant.raw_key}"}, path="/gateway/v1/chat/completions")
    assert response.status_code == 400 and "Helicone-Target-Url" in response.json()["error"]["message"]


def test_upstream_unreachable_is_502_and_logged(gateway, tenant):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    response = post(gateway, {"Helicone-Auth": f"Bearer {tenant.raw_key}",
                              "Helicone-Target-Url": f"http://127.0.0.1:{port}"}, path="/gateway/v1/chat/completions")
    assert response.status_code == 502 and "unreachable" in response.json()["error"]["message"]
    log = wait_for_log(response.headers["helicone-id"])
    assert log.status == 502 and log.error


@pytest.fixture(scope="module")
def strict_gateway(django_db_setup, mock_provider):
    """A gateway with the default SSRF protection and a short upstream timeout."""
    server = Daphne(GATEWAY_ALLOW_PRIVATE_TARGETS="0", GATEWAY_UPSTREAM_TIMEOUT="1", GATEWAY_MAX_BODY_BYTES="1000000",
                    UPSTREAM_OPENAI_URL=mock_provider.url, GATEWAY_ALLOWED_TARGET_HOSTS="localhost")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("target", ["http://127.0.0.1:9", "http://10.1.2.3", "http://169.254.169.254/latest",
                                    "http://[::1]:80", "http://192.168.0.1"])
def test_ssrf_private_targets_are_refused(strict_gateway, tenant, target):
    response = post(strict_gateway, {"Helicone-Auth": f"Bearer {tenant.raw_key}", "Helicone-Target-Url": target},
                    path="/gateway/v1/chat/completions")
    assert response.status_code == 400
    assert "Helicone-Target-Url" in response.json()["error"]["message"]
    assert "not allowed" in response.json()["error"]["message"]


def test_ssrf_openai_api_base_is_checked_and_allowlist_works(strict_gateway, tenant, mock_provider):
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", "Helicone-OpenAI-Api-Base": "http://127.0.0.1:1"}
    response = post(strict_gateway, headers)
    assert response.status_code == 400 and "Helicone-OpenAI-Api-Base" in response.json()["error"]["message"]
    # An operator-allowed host passes the check.
    port = mock_provider.url.rsplit(":", 1)[1]
    headers["Helicone-OpenAI-Api-Base"] = f"http://localhost:{port}/v1"
    response = post(strict_gateway, headers)
    assert response.status_code == 200, response.text


def test_upstream_timeout_is_504_and_logged(strict_gateway, tenant):
    response = post(strict_gateway, {"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Mock-Delay-Ms": "3000"})
    assert response.status_code == 504 and "timed out" in response.json()["error"]["message"]
    assert wait_for_log(response.headers["helicone-id"]).status == 504
