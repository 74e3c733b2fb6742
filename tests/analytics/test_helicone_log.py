"""Helicone's logging endpoints driven by its real Python helpers (`helicone-helpers`): an app calls the
provider (the mock) directly with the openai or anthropic SDK and logs the call to a daphne serving
the project with `HeliconeManualLogger`, as an app that logs without the proxy does."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import aiohttp
import httpx
import pytest
from anthropic import Anthropic
from helicone_helpers import HeliconeManualLogger
from openai import OpenAI

from analytics.models import RequestLog
from analytics.pricing import cost_usd
from orgs.models import ApiKey
from tests.gateway.conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = [{"role": "user", "content": "plan a short trip"}]  # 4 words: 4 prompt tokens at the mock
ANSWER = "word1 word2 word3 word4 word5 "  # the mock's answer: 5 completion tokens


def logger(gateway, key: str, **headers) -> HeliconeManualLogger:
    return HeliconeManualLogger(api_key=key, logging_endpoint=gateway.url, headers=headers)


def clients(mock_provider) -> tuple[OpenAI, Anthropic]:
    return (OpenAI(base_url=mock_provider.url + "/v1", api_key="sk-provider-secret"),
            Anthropic(base_url=mock_provider.url, api_key="sk-ant-provider-secret"))


def tags(request_id: str, path: str) -> dict[str, str]:
    return {"Helicone-Request-Id": request_id, "Helicone-User-Id": "ana", "Helicone-Session-Id": "trip-1",
            "Helicone-Session-Path": path, "Helicone-Session-Name": "Trip planner"}


def test_log_request_with_each_provider_is_stored_priced_and_tagged(gateway, tenant, mock_provider, capsys):
    mock_provider.reset()
    openai_client, anthropic_client = clients(mock_provider)
    calls = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022", None: "gpt-4o-mini"}
    ids = {}
    for provider, model in calls.items():
        request = {"model": model, "messages": QUESTION, "max_tokens": 50}

        def operation(recorder, provider=provider, request=request):
            if provider == "anthropic":
                response = anthropic_client.messages.create(**request)
            else:
                response = openai_client.chat.completions.create(**request)
            recorder.append_results(response.model_dump())
            return response

        ids[provider] = str(uuid.uuid4())
        helper = logger(gateway, tenant.raw_key, **{"Helicone-Property-App": "planner"})
        result = helper.log_request(request, operation, additional_headers=tags(ids[provider], f"/{provider}"),
                                    provider=provider)
        assert result.model == model
    # The helper prints only when the log endpoint refuses the log.
    assert capsys.readouterr().out == ""
    # The app's three calls went to the provider; the logs were not forwarded anywhere.
    assert [r["path"] for r in mock_provider.requests()] == ["/v1/chat/completions", "/v1/messages",
                                                              "/v1/chat/completions"]

    for provider, model in calls.items():
        log = wait_for_log(ids[provider])
        ours = {"openai": "openai", "anthropic": "anthropic", None: "custom"}[provider]
        assert (log.org_id, log.api_key_id, log.source) == (tenant.org.id, tenant.key.id, "log")
        assert (log.provider, log.requested_model, log.model, log.status) == (ours, model, model, 200)
        assert (log.prompt_tokens, log.completion_tokens) == (4, 5)
        assert log.cost_usd is not None and log.cost_usd == cost_usd(ours, model, 4, 5)
        assert (log.user_id, log.session_id, log.session_path, log.session_name) == (
            "ana", "trip-1", f"/{provider}", "Trip planner")
        assert log.properties == {"App": "planner"}
        assert 0 < log.latency_ms < 10_000 and not log.streamed
        assert json.loads(log.request_body)["messages"] == QUESTION
        response = json.loads(log.response_body)
        if provider == "anthropic":
            assert response["content"][0]["text"] == ANSWER
        else:
            assert response["choices"][0]["message"]["content"] == ANSWER
        # The helper's "_type"/"toolName" filler is not part of the provider's answer.
        assert "toolName" not in response
        assert "secret" not in log.request_body + log.response_body + json.dumps(log.request_headers)


def test_log_builder_assembles_streamed_chunks_like_a_proxied_stream(gateway, tenant, mock_provider):
    openai_client, anthropic_client = clients(mock_provider)
    helper = logger(gateway, tenant.raw_key)

    request = {"model": "gpt-4o-mini", "messages": QUESTION, "stream": True,
               "stream_options": {"include_usage": True}}
    openai_id = str(uuid.uuid4())
    builder = helper.log_builder(request, {"Helicone-Request-Id": openai_id})
    said = []
    for chunk in openai_client.chat.completions.create(**request):
        builder.add_chunk(chunk.model_dump())
        said += [choice.delta.content or "" for choice in chunk.choices]
    asyncio.run(builder.send_log())

    request = {"model": "claude-3-5-haiku-20241022", "messages": QUESTION, "max_tokens": 50, "stream": True}
    anthropic_id = str(uuid.uuid4())
    builder = helper.log_builder(request, {"Helicone-Request-Id": anthropic_id})
    with anthropic_client.messages.stream(**{k: v for k, v in request.items() if k != "stream"}) as stream:
        for event in stream:
            if event.type in ("message_start", "content_block_start", "content_block_delta", "content_block_stop",
                              "message_delta", "message_stop"):
                builder.add_chunk(event.model_dump())
    asyncio.run(builder.send_log())

    log = wait_for_log(openai_id)
    assert "".join(said) == ANSWER
    body = json.loads(log.response_body)
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == ANSWER
    assert body["choices"][0]["finish_reason"] == "stop"
    assert (log.streamed, log.prompt_tokens, log.completion_tokens) == (True, 4, 5)
    assert log.provider == "custom" and log.cost_usd == cost_usd("custom", "gpt-4o-mini", 4, 5)
    assert log.ttft_ms is not None and 0 <= log.ttft_ms <= log.latency_ms

    log = wait_for_log(anthropic_id)
    body = json.loads(log.response_body)
    assert body["type"] == "message" and body["content"][0]["text"] == ANSWER
    assert (log.streamed, log.model, log.prompt_tokens, log.completion_tokens) == (
        True, "claude-3-5-haiku-20241022", 4, 5)


def post(gateway, path: str, body, key: str | None = None, **headers) -> httpx.Response:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(gateway.url + path, content=content, headers={"Content-Type": "application/json", **headers},
                      timeout=30)


def body(request_id: str | None = None, **meta) -> dict:
    if request_id:
        meta["Helicone-Request-Id"] = request_id
    return {
        "providerRequest": {"url": "https://api.openai.com/v1/chat/completions",
                            "json": {"model": "gpt-4o-mini", "messages": QUESTION}, "meta": meta},
        "providerResponse": {"status": 200, "headers": {}, "json": {
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}}},
        "timing": {"startTime": {"seconds": 1767225600, "milliseconds": 250},
                   "endTime": {"seconds": 1767225601, "milliseconds": 500}},
    }


def test_every_route_takes_the_body_and_headers_of_the_call_win_over_meta(gateway, tenant):
    routes = {"/custom/v1/log": "custom", "/oai/v1/log": "openai", "/anthropic/v1/log": "anthropic",
              "/googleapis/v1/log": "gemini", "/v1/trace/custom/v1/log": "custom", "/v1/trace/custom/log": "custom"}
    for path, provider in routes.items():
        request_id = str(uuid.uuid4())
        sent = body(request_id, **{"Helicone-User-Id": "from-meta", "Helicone-Property-Feature": "meta",
                                   "Helicone-Property-Only-Meta": "kept"})
        response = post(gateway, path, sent, **{"Helicone-Auth": f"Bearer {tenant.raw_key}",
                                                "Helicone-User-Id": "from-header",
                                                "Helicone-Property-Feature": "header"})
        assert response.status_code == 200, response.text
        assert response.text == "ok" and response.headers["helicone-id"] == request_id
        log = wait_for_log(request_id)
        assert log.provider == provider, path
        assert log.user_id == "from-header" and log.properties == {"Feature": "header", "Only-Meta": "kept"}
        # Model: the response's (the request's is kept as requested); usage and times from the body.
        assert (log.requested_model, log.model) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
        assert (log.prompt_tokens, log.completion_tokens) == (1000, 500)
        assert log.created_at.timestamp() == 1767225600.25 and log.latency_ms == 1250


def test_model_override_cost_timing_strings_and_no_timing(gateway, tenant):
    overridden, given_cost, untimed = (str(uuid.uuid4()) for _ in range(3))
    sent = body(overridden, **{"Helicone-Model-Override": "my-fine-tune"})
    sent["timing"] = {"startTime": "1767225600", "endTime": "1767225602500", "timeToFirstToken": 300}
    assert post(gateway, "/oai/v1/log", sent, tenant.raw_key).status_code == 200
    sent = body(given_cost)
    sent["providerResponse"]["cost"] = 0.0123
    sent["timing"] = {"startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:00:03Z"}
    assert post(gateway, "/oai/v1/log", sent, tenant.raw_key).status_code == 200
    sent = body(untimed)
    del sent["timing"]
    before = time.time()
    assert post(gateway, "/oai/v1/log", sent, tenant.raw_key).status_code == 200

    log = wait_for_log(overridden)
    assert log.model == "my-fine-tune" and log.latency_ms == 2500 and log.ttft_ms == 300
    assert log.cost_usd is None  # a model without a price is unpriced, never 0
    log = wait_for_log(given_cost)
    assert float(log.cost_usd) == 0.0123 and log.latency_ms == 3000
    log = wait_for_log(untimed)
    assert before - 1 <= log.created_at.timestamp() <= time.time() + 1 and log.latency_ms is None
    assert log.cost_usd == cost_usd("openai", "gpt-4o-mini-2024-07-18", 1000, 500)


def test_text_bodies_raw_sse_and_plain_text(gateway, tenant):
    chunks = [{"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
              {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
              {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [],
               "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}]
    sse, plain = str(uuid.uuid4()), str(uuid.uuid4())
    sent = body(sse)
    sent["providerResponse"]["json"] = {}
    sent["providerResponse"]["textBody"] = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    assert post(gateway, "/oai/v1/log", sent, tenant.raw_key).status_code == 200
    sent = body(plain)
    sent["providerResponse"] = {"status": 200, "headers": {}, "textBody": "just some text"}
    assert post(gateway, "/custom/v1/log", sent, tenant.raw_key).status_code == 200

    log = wait_for_log(sse)
    assert json.loads(log.response_body)["choices"][0]["message"]["content"] == "Hello"
    assert (log.streamed, log.prompt_tokens, log.completion_tokens, log.model) == (True, 3, 2, "gpt-4o-mini")
    log = wait_for_log(plain)
    assert log.response_body == "just some text" and log.prompt_tokens is None


def test_bad_input_is_refused_naming_the_problem_and_nothing_is_stored(gateway, tenant, capsys):
    _, read_only = ApiKey.generate(tenant.org, "reader", ["read"])
    _, log_only = ApiKey.generate(tenant.org, "logger", ["log"])
    before = RequestLog.objects.count()
    bad_status = body()
    bad_status["providerResponse"]["status"] = "200"
    cases = [
        (post(gateway, "/custom/v1/log", bad_status, tenant.raw_key), 400, "providerResponse.status"),
        (post(gateway, "/custom/v1/log", b"{not json", tenant.raw_key), 400, "not valid JSON"),
        (post(gateway, "/custom/v1/log", {"providerResponse": {}}, tenant.raw_key), 400, "providerRequest"),
        (post(gateway, "/custom/v1/log", body(**{"Helicone-Request-Id": "nope"}), tenant.raw_key), 400,
         "Helicone-Request-Id"),
        (post(gateway, "/custom/v1/log", body(), **{"Helicone-Auth": f"Bearer {tenant.raw_key}",
                                                     "Helicone-Session-Path": "a\x7fb"}), 400,
         "Helicone-Session-Path"),
        (post(gateway, "/custom/v1/log", body()), 401, "Missing API key"),
        (post(gateway, "/custom/v1/log", body(), "sk-helicone-nope"), 401, "Invalid or revoked"),
        (post(gateway, "/custom/v1/log", body(), read_only), 403, "'log' or 'proxy' or 'write' scope"),
        (post(gateway, "/custom/v1/log", b" " * (10 * 1024 * 1024 + 1), tenant.raw_key), 413, "MANUAL_LOG_MAX_BYTES"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["error"], response.text
    assert RequestLog.objects.count() == before
    # A key with only the log scope logs.
    request_id = str(uuid.uuid4())
    assert post(gateway, "/custom/v1/log", body(request_id), log_only).status_code == 200
    assert wait_for_log(request_id).api_key.name == "logger"
    # What a user of the helper sees when the key is wrong: the reason, printed.
    logger(gateway, "sk-helicone-wrong").log_request({"model": "m"}, lambda recorder: None)
    assert "Invalid or revoked API key" in capsys.readouterr().out


def test_an_id_is_stored_once_and_another_orgs_id_is_refused(gateway, tenant):
    request_id = str(uuid.uuid4())
    for _ in range(2):
        response = post(gateway, "/oai/v1/log", body(request_id), tenant.raw_key)
        assert response.status_code == 200 and response.headers["helicone-id"] == request_id
    wait_for_log(request_id)
    time.sleep(0.3)
    assert RequestLog.objects.filter(id=request_id).count() == 1
    response = post(gateway, "/oai/v1/log", body(request_id), tenant.other_raw_key)
    assert response.status_code == 409 and request_id in response.json()["error"]
    assert RequestLog.objects.get(id=request_id).org_id == tenant.org.id


def test_a_logged_call_is_on_the_api_the_pages_and_the_live_stream(gateway, tenant, client):
    request_id = str(uuid.uuid4())
    sent = body(request_id, **{"Helicone-User-Id": "ana", "Helicone-Session-Id": "trip-9"})
    del sent["timing"]  # logged now: in the pages' default time range

    async def tail() -> dict:
        url = gateway.url.replace("http", "ws") + "/ws/orgs/acme/live/"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, headers={"Authorization": f"Bearer {tenant.raw_key}"}) as ws:
                await asyncio.to_thread(post, gateway, "/oai/v1/log", sent, tenant.raw_key)
                while True:
                    message = await ws.receive_json(timeout=10)
                    if message.get("id") == request_id:
                        return message

    message = asyncio.run(tail())
    assert message["model"] == "gpt-4o-mini-2024-07-18" and message["user_id"] == "ana"
    log = wait_for_log(request_id)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tenant.raw_key}"}
    listed = client.get("/api/v1/requests?session_id=trip-9", **auth).json()
    assert [item["id"] for item in listed["items"]] == [request_id]
    assert listed["items"][0]["cost_usd"] == float(log.cost_usd)
    client.force_login(tenant.user)
    for page in ("/o/acme/sessions/trip-9/", "/o/acme/users/", f"/o/acme/requests/{request_id}/"):
        response = client.get(page)
        assert response.status_code == 200 and "ana" in response.content.decode(), page


def test_a_log_key_made_on_the_keys_page_logs_and_does_nothing_else(gateway, tenant, client):
    client.force_login(tenant.user)
    page = client.get("/o/acme/settings/keys/").content.decode()
    assert 'value="log"' in page and "Log (send logs only)" in page
    response = client.post("/o/acme/settings/keys/", {"name": "app logger", "scopes": ["log"]})
    assert response.status_code == 201
    raw = re.search(r'id="new-key">(sk-helicone-[^<]+)<', response.content.decode()).group(1)
    request_id = str(uuid.uuid4())
    assert post(gateway, "/custom/v1/log", body(request_id), raw).status_code == 200
    assert wait_for_log(request_id).api_key.name == "app logger"
    # It can neither read logs nor call providers through the proxy.
    assert post(gateway, "/v1/request/query", {"filter": "all"}, raw).status_code == 403
    proxied = httpx.post(gateway.url + "/oai/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": QUESTION},
                         headers={"Helicone-Auth": f"Bearer {raw}", "Authorization": "Bearer sk-provider"}, timeout=30)
    assert proxied.status_code == 403
