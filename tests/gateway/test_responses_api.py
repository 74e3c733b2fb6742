"""The OpenAI Responses API through the gateway (issue #15): plain and streamed calls are logged with
usage and cost, cached (a stream replayed with the same events), and shown on the request page
from the API's real JSON (`input` items, `output` items)."""

import json
import time
import uuid

import httpx
import openai
import pytest
from django.test import Client

from analytics.pricing import cost_usd

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = [{"type": "function", "name": "get_weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def oai(gateway, tenant, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key="sk-provider", max_retries=0,
                         default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", **headers})


def page_conversation(tenant, log_id) -> list[dict]:
    wait_for_log(log_id)
    client = Client()
    client.force_login(tenant.user)
    response = client.get(f"/o/acme/requests/{log_id}/")
    assert response.status_code == 200
    return response.context["conversation"]


def test_plain_and_streamed_calls_are_logged_with_usage_and_cost(gateway, tenant):
    c = oai(gateway, tenant, **{"X-Mock-End-Delay-Ms": "200"})
    raw = c.responses.with_raw_response.create(model="gpt-4o-mini", input="one two three",
                                                instructions="Be brief.")
    assert raw.parse().output_text == "word1 word2 word3 word4 word5 "
    request_id = str(uuid.uuid4())
    with c.responses.stream(model="gpt-4o-mini", input="one two three",
                            extra_headers={"Helicone-Request-Id": request_id}) as stream:
        for _event in stream:
            pass
        assert stream.get_final_response().output_text == "word1 word2 word3 word4 word5 "
    for log in (wait_for_log(raw.headers["helicone-id"]), wait_for_log(request_id)):
        assert not log.cancelled and log.error == "" and log.status == 200
        assert (log.prompt_tokens, log.completion_tokens) == (3, 5)
        assert log.cost_usd == cost_usd("openai", "gpt-4o-mini", 3, 5) > 0
    streamed = wait_for_log(request_id)
    assert streamed.streamed and json.loads(streamed.response_body)["object"] == "response"

    convo = page_conversation(tenant, raw.headers["helicone-id"])
    assert [(m["role"], m["text"]) for m in convo] == [
        ("system", "Be brief."), ("user", "one two three"), ("assistant", "word1 word2 word3 word4 word5")]
    assert page_conversation(tenant, request_id)[-1]["text"] == "word1 word2 word3 word4 word5"


def test_plain_and_streamed_calls_are_cached(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", "Helicone-Cache-Enabled": "true",
               "X-Mock-End-Delay-Ms": "200"}
    for stream in (False, True):
        body = {"model": "gpt-4o-mini", "input": f"cache {marker} {stream}", "stream": stream}
        answers = []
        for _ in range(30):
            response = httpx.post(gateway.url + "/oai/v1/responses", json=body, headers=headers, timeout=10)
            assert response.status_code == 200
            answers.append(response)
            if response.headers["helicone-cache"] == "HIT":
                break
            time.sleep(0.1)
        hit, first = answers[-1], answers[0]
        assert hit.headers["helicone-cache"] == "HIT" and len(answers) <= 4
        if stream:
            assert hit.headers["content-type"].startswith("text/event-stream")
            # Replayed with the same events (ids and timestamps included).
            assert hit.content == first.content and b"event: response.completed" in hit.content
        else:
            assert hit.json() == first.json()
        log = wait_for_log(hit.headers["helicone-id"])
        assert log.cache_hit and (log.prompt_tokens, log.completion_tokens) == (3, 5)
        assert log.cost_usd == cost_usd("openai", "gpt-4o-mini", 3, 5)
        calls = sum(1 for r in mock_provider.requests() if f"cache {marker} {stream}" in r["body"])
        assert calls == len(answers) - 1


def test_function_calls_and_their_output_are_shown(gateway, tenant):
    c = oai(gateway, tenant)
    request_id = str(uuid.uuid4())
    with c.responses.stream(model="gpt-4o-mini", input="weather in Lisbon", tools=TOOLS,
                            extra_headers={"Helicone-Request-Id": request_id}) as stream:
        call = next(item for item in stream.get_final_response().output if item.type == "function_call")
    log = wait_for_log(request_id)
    assert json.loads(log.response_body)["output"][0]["arguments"] == '{"city":"mock city"}'
    answer = page_conversation(tenant, request_id)[-1]
    assert answer["answer"] and answer["tool_calls"][0]["name"] == "get_weather"
    assert json.loads(answer["tool_calls"][0]["arguments"]) == {"city": "mock city"}

    follow_up = c.responses.with_raw_response.create(model="gpt-4o-mini", tools=TOOLS, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "weather in Lisbon"}]},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24 C"},
    ])
    convo = page_conversation(tenant, follow_up.headers["helicone-id"])
    assert [m["role"] for m in convo] == ["user", "assistant", "tool", "assistant"]
    assert convo[0]["text"] == "weather in Lisbon"
    assert convo[1]["tool_calls"][0]["name"] == "get_weather"
    assert convo[2]["text"] == "sunny, 24 C" and convo[2]["tool_call_id"] == call.call_id
    assert convo[3]["text"] == "word1 word2 word3 word4 word5"


def test_streams_read_by_the_sdk_are_cached(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    c = oai(gateway, tenant, **{"Helicone-Cache-Enabled": "true", "X-Mock-End-Delay-Ms": "300"})
    outcomes = []
    for _ in range(30):
        raw = c.responses.with_raw_response.create(model="gpt-4o-mini", input=f"stream {marker}", stream=True)
        events = list(raw.parse())
        assert events[-1].type == "response.completed"
        assert events[-1].response.output[0].content[0].text == "word1 word2 word3 word4 word5 "
        outcomes.append(raw.headers["helicone-cache"])
        if outcomes[-1] == "HIT":
            break
        time.sleep(0.1)
    assert outcomes[-1] == "HIT" and len(outcomes) <= 4, outcomes
    assert sum(1 for r in mock_provider.requests() if marker in r["body"]) == len(outcomes) - 1
    log = wait_for_log(raw.headers["helicone-id"])
    assert log.cache_hit and log.streamed and not log.cancelled
