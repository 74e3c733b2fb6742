"""A key of this gateway given as the provider's credential is refused with a 400 naming the header,
and never reaches the provider (issue #15)."""

import uuid

import anthropic
import httpx
import openai
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "hello"}]


def reached(mock_provider, marker: str) -> int:
    return sum(1 for r in mock_provider.requests() if r["headers"].get("x-test-marker") == marker)


def assert_refused(response: httpx.Response, header: str) -> None:
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "helicone_request_error"
    assert error["message"].startswith(f"The {header} header holds a key of this gateway")
    assert "Helicone-Auth" in error["message"]


def test_openai_sdk_given_the_gateway_key(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    client = openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key=tenant.raw_key, max_retries=0,
                           default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Test-Marker": marker})
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert_refused(info.value.response, "Authorization")
    with pytest.raises(openai.BadRequestError):
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert reached(mock_provider, marker) == 0


def test_anthropic_sdk_given_the_gateway_key_either_way(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Test-Marker": marker}
    # Current SDKs send the key as a bearer token, older ones (and curl examples) as x-api-key.
    sdk = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=tenant.raw_key, max_retries=0,
                              default_headers=headers)
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(model="claude-3-5-haiku-20241022", max_tokens=10, messages=MESSAGES)
    assert_refused(info.value.response, "Authorization" if "Authorization" in sdk.auth_headers else "x-api-key")
    response = httpx.post(gateway.url + "/anthropic/v1/messages", timeout=10,
                          json={"model": "claude-3-5-haiku-20241022", "max_tokens": 10, "messages": MESSAGES},
                          headers={**headers, "x-api-key": tenant.raw_key, "anthropic-version": "2023-06-01"})
    assert_refused(response, "x-api-key")
    assert reached(mock_provider, marker) == 0


def test_azure_api_key_and_the_logging_helper(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    response = httpx.post(gateway.url + "/oai/v1/chat/completions", timeout=10,
                          json={"model": "gpt-4o-mini", "messages": MESSAGES},
                          headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "api-key": tenant.raw_key,
                                   "X-Test-Marker": marker})
    assert_refused(response, "api-key")
    # Helicone's logging helper sends its key as Authorization to /oai/v1/log: that is its logging
    # endpoint (issue #19), never a proxy route, so the key is taken as the key it is.
    response = httpx.post(gateway.url + "/oai/v1/log", timeout=10, json={"providerRequest": {}},
                          headers={"Authorization": f"Bearer {tenant.raw_key}", "X-Test-Marker": marker})
    assert response.status_code == 400
    assert response.json()["error"].startswith("providerResponse")
    assert reached(mock_provider, marker) == 0


def test_a_fallback_carrying_the_gateway_key(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    fallbacks = f'[{{"target-url": "{mock_provider.url}", "headers": {{"Authorization": "Bearer {tenant.raw_key}"}}}}]'
    response = httpx.post(gateway.url + "/oai/v1/chat/completions", timeout=10,
                          json={"model": "gpt-4o-mini", "messages": MESSAGES},
                          headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "Authorization": "Bearer sk-provider",
                                   "Helicone-Fallbacks": fallbacks, "X-Test-Marker": marker})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "Helicone-Fallbacks" in message and "holds a key of this gateway" in message
    assert reached(mock_provider, marker) == 0


def test_provider_keys_pass(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    client = openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key="sk-proj-provider", max_retries=0,
                           default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Test-Marker": marker})
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    assert reached(mock_provider, marker) == 1
