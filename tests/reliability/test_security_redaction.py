"""Credentials sent through a real daphne are forwarded to the provider but never stored or
logged: not in any column of the request log, not in the daphne process output, not in
Redis (scaled setup). Gateway keys (`Helicone-Auth`) never even reach the provider."""

import json
import os

import httpx
import pytest
from django.core import serializers

from analytics.models import RequestLog
from tests.gateway.conftest import gateway, mock_provider, tenant, wait_for_log  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

PROVIDER_SECRETS = {
    "Authorization": "Bearer sk-proj-SECRET-openai-0001",
    "x-api-key": "sk-ant-SECRET-anthropic-0002",
    "api-key": "SECRET-azure-0003",
    "x-goog-api-key": "SECRET-google-0004",
    "Proxy-Authorization": "Basic SECRET-proxy-0005",
    "Cookie": "sessionid=SECRET-cookie-0006; csrftoken=SECRET-cookie-0007",
}
FALLBACK_SECRET = "sk-proj-SECRET-fallback-0008"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def secrets_of(tenant) -> list[str]:
    values = [v.split(" ", 1)[-1] for v in PROVIDER_SECRETS.values()]
    return [*values, "SECRET-cookie-0006", "SECRET-cookie-0007", FALLBACK_SECRET, tenant.raw_key]


def assert_clean(text: str, secrets: list[str], where: str) -> None:
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, f"{where} contains {leaked}"


def stored_text(log: RequestLog) -> str:
    """Every column of the row as the database returns it, serialised."""
    return serializers.serialize("json", [RequestLog.objects.get(pk=log.pk)])


def test_credentials_are_forwarded_but_never_stored_or_logged(gateway, tenant, mock_provider):
    mock_provider.reset()
    fallbacks = [{"target-url": mock_provider.url, "headers": {"Authorization": f"Bearer {FALLBACK_SECRET}"},
                  "onCodes": [500]}]
    headers = {**PROVIDER_SECRETS, "Helicone-Auth": f"Bearer {tenant.raw_key}",
               "Helicone-Fallbacks": json.dumps(fallbacks), "Helicone-Property-Feature": "chat"}
    ok = httpx.post(gateway.url + "/oai/v1/chat/completions", json=BODY, headers=headers, timeout=30)
    assert ok.status_code == 200, ok.text
    assert "content-security-policy" not in ok.headers  # proxy responses skip Django and its middleware
    # A refused request (bad header) is logged too, with the same redaction.
    refused = httpx.post(gateway.url + "/oai/v1/chat/completions", json=BODY, timeout=30,
                         headers={**headers, "Helicone-Omit-Request": "maybe"})
    assert refused.status_code == 400

    # The provider got its credentials, and never the gateway key.
    sent = mock_provider.requests()
    assert len(sent) == 1
    assert sent[0]["headers"]["authorization"] == PROVIDER_SECRETS["Authorization"]
    assert sent[0]["headers"]["x-api-key"] == PROVIDER_SECRETS["x-api-key"]
    assert "helicone-auth" not in sent[0]["headers"] and "helicone-fallbacks" not in sent[0]["headers"]

    secrets = secrets_of(tenant)
    for response in (ok, refused):
        log = wait_for_log(response.headers["helicone-id"])
        assert_clean(stored_text(log), secrets, f"request log {log.pk}")
        # The headers were kept, only the credentials hidden.
        stored = log.request_headers
        for name in PROVIDER_SECRETS:
            assert stored[name.lower()] == "[redacted]", (name, stored.get(name.lower()))
        assert stored["helicone-auth"] == "[redacted]"
        assert stored["helicone-property-feature"] == "chat"
        assert json.loads(stored["helicone-fallbacks"])[0]["headers"] == {"Authorization": "[redacted]"}
        assert json.loads(stored["helicone-fallbacks"])[0]["target-url"] == mock_provider.url

    assert_clean(gateway.output(), secrets, "the daphne process output")
    if os.environ.get("REDIS_URL"):
        assert_clean(redis_dump(os.environ["REDIS_URL"]), secrets, "Redis")


def redis_dump(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "stream":
            parts += [repr(entry).encode() for entry in client.xrange(key)]
        elif kind == "hash":
            parts.append(repr(client.hgetall(key)).encode())
        elif kind == "list":
            parts += client.lrange(key, 0, -1)
        elif kind in ("set", "zset"):
            parts.append(repr(client.smembers(key) if kind == "set" else client.zrange(key, 0, -1)).encode())
    return b"\n".join(parts).decode("latin-1")
