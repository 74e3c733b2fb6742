"""Anthropic through the gateway with the official SDK, plain and streamed."""

import anthropic
import pytest

from analytics.pricing import cost_usd

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "hello there claude"}]  # 3 words


def client(gateway, tenant, **headers) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.url + "/anthropic", api_key="sk-ant-secret", max_retries=0,
        default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", **headers},
    )


def test_message_is_proxied_and_logged(gateway, tenant, mock_provider):
    mock_provider.reset()
    raw = client(gateway, tenant, **{"Helicone-User-Id": "u-1"}).messages.with_raw_response.create(
        model="claude-3-5-sonnet-20241022", max_tokens=50, messages=MESSAGES
    )
    message = raw.parse()
    upstream = mock_provider.requests()[-1]
    # The SDK's credential (x-api-key, or Authorization in newer SDKs) reaches Anthropic untouched.
    credential = upstream["headers"].get("x-api-key") or upstream["headers"].get("authorization", "")
    assert credential.endswith("sk-ant-secret"), upstream["headers"]
    assert upstream["headers"]["anthropic-version"]
    log = wait_for_log(raw.headers["helicone-id"])
    assert (log.provider, log.model, log.status) == ("anthropic", "claude-3-5-sonnet-20241022", 200)
    assert (log.prompt_tokens, log.completion_tokens) == (3, message.usage.output_tokens)
    assert log.cost_usd == cost_usd("anthropic", "claude-3-5-sonnet-20241022", 3, message.usage.output_tokens)
    assert log.user_id == "u-1"


def test_streamed_message_usage_from_message_start_and_delta(gateway, tenant):
    c = client(gateway, tenant, **{"X-Mock-Cached-Tokens": "2"})
    with c.messages.stream(model="claude-3-5-sonnet-20241022", max_tokens=50, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        log_id = stream.response.headers["helicone-id"]
    assert text
    log = wait_for_log(log_id)
    assert log.streamed and not log.error
    # Anthropic's input_tokens exclude cache reads; the log counts every prompt token.
    assert log.prompt_tokens == final.usage.input_tokens + 2
    assert log.cached_tokens == 2
    assert log.completion_tokens == final.usage.output_tokens
    assert log.ttft_ms is not None and text in log.response_body
    assert log.cost_usd == cost_usd("anthropic", "claude-3-5-sonnet-20241022", log.prompt_tokens,
                                    log.completion_tokens, 2)


def test_user_from_anthropic_metadata(gateway, tenant):
    raw = client(gateway, tenant).messages.with_raw_response.create(
        model="claude-3-5-haiku-20241022", max_tokens=10, messages=MESSAGES, metadata={"user_id": "meta-user"}
    )
    assert wait_for_log(raw.headers["helicone-id"]).user_id == "meta-user"


def test_x_api_key_and_beta_headers_pass_through(gateway, tenant, mock_provider):
    import httpx

    mock_provider.reset()
    response = httpx.post(gateway.url + "/anthropic/v1/messages", json={
        "model": "claude-3-5-sonnet-20241022", "max_tokens": 5, "messages": MESSAGES,
    }, headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "x-api-key": "sk-ant-raw",
                "anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024-04-04"})
    assert response.status_code == 200
    headers = mock_provider.requests()[-1]["headers"]
    assert (headers["x-api-key"], headers["anthropic-version"], headers["anthropic-beta"]) == (
        "sk-ant-raw", "2023-06-01", "tools-2024-04-04")
