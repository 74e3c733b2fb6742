"""Retries and fallbacks through the official SDK, as the mock provider sees them."""

import json
import time
import uuid

import httpx
import openai
import pytest

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "try again"}]
FAST_RETRIES = {"Helicone-Retry-Enabled": "true", "Helicone-Retry-Min-Timeout": "10",
                "Helicone-Retry-Max-Timeout": "50"}


def client(gateway, tenant, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key="sk-provider",
                         default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", **headers}, max_retries=0)


def seen(mock_provider, key: str) -> list[dict]:
    return [r for r in mock_provider.requests() if r["headers"].get("x-mock-key") == key]


def test_failures_are_retried_until_success(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    raw = client(gateway, tenant, **FAST_RETRIES, **{"X-Mock-Fail-Times": "2", "X-Mock-Key": key}) \
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.status_code == 200 and raw.parse().choices[0].message.content
    assert len(seen(mock_provider, key)) == 3
    log = wait_for_log(raw.headers["helicone-id"])
    assert (log.status, log.retries, log.fallback_index) == (200, 2, None)
    assert "helicone-fallback-index" not in raw.headers


def test_nothing_is_retried_without_the_header(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    with pytest.raises(openai.InternalServerError):
        client(gateway, tenant, **{"X-Mock-Fail-Times": "2", "X-Mock-Key": key}) \
            .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(seen(mock_provider, key)) == 1


def test_retries_stop_at_retry_num_and_return_the_last_answer(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    with pytest.raises(openai.InternalServerError) as info:
        client(gateway, tenant, **FAST_RETRIES, **{"Helicone-Retry-Num": "2", "X-Mock-Status": "503",
                                                   "X-Mock-Key": key}) \
            .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.response.status_code == 503
    assert len(seen(mock_provider, key)) == 3
    assert wait_for_log(info.value.response.headers["helicone-id"]).retries == 2


def test_client_errors_are_not_retried(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    with pytest.raises(openai.BadRequestError):
        client(gateway, tenant, **FAST_RETRIES, **{"X-Mock-Status": "400", "X-Mock-Key": key}) \
            .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(seen(mock_provider, key)) == 1


def test_connection_errors_are_retried(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    raw = client(gateway, tenant, **FAST_RETRIES, **{"X-Mock-Fault": "reset", "X-Mock-Fail-Times": "1",
                                                     "X-Mock-Key": key}) \
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.status_code == 200 and len(seen(mock_provider, key)) == 2


def test_retry_after_is_honoured(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    started = time.monotonic()
    raw = client(gateway, tenant, **{"Helicone-Retry-Enabled": "true", "Helicone-Retry-Min-Timeout": "10",
                                     "X-Mock-Status": "429", "X-Mock-Fail-Times": "1", "X-Mock-Key": key,
                                     "X-Mock-Retry-After": "1"}) \
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.status_code == 200 and len(seen(mock_provider, key)) == 2
    assert time.monotonic() - started >= 0.95, "waited as long as the provider asked"


def test_a_started_stream_is_never_retried(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", **FAST_RETRIES, "X-Mock-Fault": "truncate",
               "X-Mock-Fail-Times": "1", "X-Mock-Key": key, "X-Mock-Chunks": "20"}
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    response = httpx.post(gateway.url + "/oai/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert response.status_code == 200 and b"word1" in response.content and b"[DONE]" not in response.content
    assert len(seen(mock_provider, key)) == 1, "bytes had reached the client: no retry"
    log = wait_for_log(response.headers["helicone-id"])
    assert log.retries == 0 and "upstream stream" in log.error


def test_simple_fallback_serves_another_model(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    raw = client(gateway, tenant, **{"Helicone-Fallback": json.dumps([{"model": "mock-fail-500"},
                                                                      {"model": "gpt-4o-mini"}]),
                                     "X-Mock-Key": key}) \
        .chat.completions.with_raw_response.create(model="mock-fail-503", messages=MESSAGES)
    assert raw.status_code == 200 and raw.parse().model == "gpt-4o-mini"
    assert raw.headers["helicone-fallback-index"] == "2"
    assert [r["json"]["model"] for r in seen(mock_provider, key)] == ["mock-fail-503", "mock-fail-500", "gpt-4o-mini"]
    log = wait_for_log(raw.headers["helicone-id"])
    assert (log.fallback_index, log.model, log.requested_model, log.retries) == (2, "gpt-4o-mini", "mock-fail-503", 0)
    assert '"mock-fail-503"' in log.request_body, "the log keeps what the client sent"


def test_primary_success_reports_index_zero(gateway, tenant):
    raw = client(gateway, tenant, **{"Helicone-Fallback": '[{"model": "gpt-4o"}]'}) \
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["helicone-fallback-index"] == "0" and raw.parse().model == "gpt-4o-mini"
    assert wait_for_log(raw.headers["helicone-id"]).fallback_index == 0


def test_full_fallback_form_with_target_headers_codes_and_retries(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    fallbacks = [{"target-url": mock_provider.url, "headers": {"Authorization": "Bearer sk-backup"},
                  "onCodes": [{"from": 500, "to": 599}], "bodyKeyOverride": {"model": "gpt-4o", "temperature": 0}}]
    raw = client(gateway, tenant, **FAST_RETRIES, **{"Helicone-Retry-Num": "1", "Helicone-Fallbacks":
                                                     json.dumps(fallbacks), "X-Mock-Key": key}) \
        .chat.completions.with_raw_response.create(model="mock-fail-502", messages=MESSAGES)
    assert raw.status_code == 200 and raw.headers["helicone-fallback-index"] == "1"
    sent = seen(mock_provider, key)
    assert [r["json"]["model"] for r in sent] == ["mock-fail-502", "mock-fail-502", "gpt-4o"]
    assert sent[-1]["headers"]["authorization"] == "Bearer sk-backup" and sent[-1]["json"]["temperature"] == 0
    assert sent[0]["headers"]["authorization"] == "Bearer sk-provider"
    log = wait_for_log(raw.headers["helicone-id"])
    assert (log.retries, log.fallback_index, log.model) == (1, 1, "gpt-4o")


def test_fallback_only_on_its_codes(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    fallbacks = [{"onCodes": [429], "bodyKeyOverride": {"model": "gpt-4o"}}]
    with pytest.raises(openai.InternalServerError) as info:
        client(gateway, tenant, **{"Helicone-Fallbacks": json.dumps(fallbacks), "X-Mock-Key": key}) \
            .chat.completions.create(model="mock-fail-500", messages=MESSAGES)
    assert info.value.response.headers["helicone-fallback-index"] == "0"
    assert len(seen(mock_provider, key)) == 1


def test_unreachable_primary_and_fallback_give_a_502_naming_the_last_attempt(gateway, tenant, mock_provider):
    key = uuid.uuid4().hex
    fallbacks = [{"target-url": mock_provider.url, "bodyKeyOverride": {"model": "gpt-4o"}}]
    with pytest.raises(openai.InternalServerError) as info:
        client(gateway, tenant, **{"Helicone-Fallbacks": json.dumps(fallbacks), "X-Mock-Fault": "reset",
                                   "X-Mock-Key": key}) \
            .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    response = info.value.response
    assert response.status_code == 502 and response.headers["helicone-fallback-index"] == "1"
    # The primary first (a reset on a reused keep-alive connection is re-sent once on a new one), then the fallback.
    models = [r["json"]["model"] for r in seen(mock_provider, key)]
    assert models[0] == "gpt-4o-mini" and models[-1] == "gpt-4o" and "gpt-4o" not in models[:-1]
    log = wait_for_log(response.headers["helicone-id"])
    assert (log.status, log.fallback_index) == (502, 1)


@pytest.mark.parametrize("header,value", [
    ("Helicone-Fallback", '[{"model": "gpt-4o"'),
    ("Helicone-Fallback", '[{"model": "gpt-4o", "target-url": "http://x"}]'),
    ("Helicone-Fallbacks", '[{"target-url": "http://x", "on-codes": [500]}]'),
    ("Helicone-Fallbacks", "{}"),
])
def test_malformed_fallbacks_are_a_400_and_nothing_is_sent(gateway, tenant, mock_provider, header, value):
    key = uuid.uuid4().hex
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway, tenant, **{header: value, "X-Mock-Key": key}) \
            .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    error = info.value.response.json()["error"]
    assert error["type"] == "helicone_header_error" and f"Invalid {header} header" in error["message"]
    assert seen(mock_provider, key) == []
