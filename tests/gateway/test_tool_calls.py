"""Streamed tool calls are logged assembled, as the provider's non-streamed API returns them, and the
request page shows them (issue #15): OpenAI `tool_calls` with the whole `arguments` string,
Anthropic `tool_use` blocks with a parsed `input`."""

import json
import uuid

import anthropic
import openai
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client

from tests.analytics.test_browser import browser  # noqa: F401  (the headless Chromium fixture)

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
           "required": ["city"]}
OPENAI_TOOLS = [{"type": "function",
                 "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
QUESTION = [{"role": "user", "content": "weather in Lisbon"}]
ARGUMENTS = {"city": "mock city", "days": 1}


def oai(gateway, tenant, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key="sk-provider", max_retries=0,
                         default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", **headers})


def claude(gateway, tenant, **headers) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key="sk-ant", max_retries=0,
                               default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", **headers})


def streamed_openai_tool_call(gateway, tenant) -> str:
    request_id = str(uuid.uuid4())
    c = oai(gateway, tenant, **{"Helicone-Request-Id": request_id, "X-Mock-Chunks": "7",
                                "X-Mock-End-Delay-Ms": "100"})
    with c.chat.completions.stream(model="gpt-4o-mini", messages=QUESTION, tools=OPENAI_TOOLS) as stream:
        for _event in stream:
            pass
        final = stream.get_final_completion()
    assert json.loads(final.choices[0].message.tool_calls[0].function.arguments) == ARGUMENTS
    return request_id


def streamed_anthropic_tool_use(gateway, tenant) -> str:
    request_id = str(uuid.uuid4())
    c = claude(gateway, tenant, **{"Helicone-Request-Id": request_id, "X-Mock-Chunks": "7",
                                   "X-Mock-End-Delay-Ms": "100"})
    with c.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=200, messages=QUESTION,
                           tools=ANTHROPIC_TOOLS) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == ARGUMENTS
    return request_id


def test_openai_stream_is_logged_as_the_non_streamed_completion(gateway, tenant):
    plain = oai(gateway, tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=QUESTION, tools=OPENAI_TOOLS)
    plain_body = json.loads(plain.http_response.text)
    log = wait_for_log(streamed_openai_tool_call(gateway, tenant))
    assert not log.cancelled and log.error == "" and log.completion_tokens == 7
    logged = json.loads(log.response_body)
    assert logged["object"] == "chat.completion"
    message = logged["choices"][0]["message"]
    assert logged["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_mock_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == ARGUMENTS
    # The same shape the API returns without streaming (ids aside).
    expected = plain_body["choices"][0]["message"]
    assert {k: message[k] for k in ("role", "content")} == {k: expected[k] for k in ("role", "content")}
    assert [c["function"] for c in message["tool_calls"]] == [c["function"] for c in expected["tool_calls"]]


def test_anthropic_stream_is_logged_with_parsed_tool_input(gateway, tenant):
    plain = claude(gateway, tenant).messages.with_raw_response.create(
        model="claude-3-5-haiku-20241022", max_tokens=200, messages=QUESTION, tools=ANTHROPIC_TOOLS)
    expected = json.loads(plain.http_response.text)
    log = wait_for_log(streamed_anthropic_tool_use(gateway, tenant))
    assert not log.cancelled and log.error == "" and log.completion_tokens == 7
    logged = json.loads(log.response_body)
    assert logged["stop_reason"] == "tool_use" and logged["type"] == "message"
    [block] = logged["content"]
    assert block["type"] == "tool_use" and block["name"] == "get_weather" and block["input"] == ARGUMENTS
    assert "partial_json" not in block
    assert {k: v for k, v in block.items() if k != "id"} == {k: v for k, v in expected["content"][0].items()
                                                             if k != "id"}


def test_request_page_shows_tool_calls_and_results(gateway, tenant):
    """A later turn that carries the call and its result shows both, in either provider's shape."""
    openai_turn = [*QUESTION,
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'}}]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"}]
    first = oai(gateway, tenant).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=openai_turn, tools=OPENAI_TOOLS)
    anthropic_turn = [*QUESTION,
                      {"role": "assistant", "content": [
                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Porto"}}]},
                      {"role": "user", "content": [
                          {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rainy, 15 C"}]}]
    second = claude(gateway, tenant).messages.with_raw_response.create(
        model="claude-3-5-haiku-20241022", max_tokens=200, messages=anthropic_turn, tools=ANTHROPIC_TOOLS)
    client = Client()
    client.force_login(tenant.user)
    for raw, city, result in ((first, "Lisbon", "sunny, 24 C"), (second, "Porto", "rainy, 15 C")):
        log = wait_for_log(raw.headers["helicone-id"])
        page = client.get(f"/o/acme/requests/{log.id}/")
        convo = page.context["conversation"]
        calls = [call for message in convo for call in message["tool_calls"]]
        assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": city}
        results = [m for m in convo if m["role"] == "tool"]
        assert [m["text"] for m in results] == [result]
        assert convo[-1]["answer"] and convo[-1]["text"] == "word1 word2 word3 word4 word5"


def test_request_page_shows_streamed_tool_calls_in_a_browser(gateway, tenant, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ids = [streamed_openai_tool_call(gateway, tenant), streamed_anthropic_tool_use(gateway, tenant)]
    for request_id in ids:
        wait_for_log(request_id)
    # Hashed as the server hashes (this test process uses a fast hasher the server does not know).
    tenant.user.password = PBKDF2PasswordHasher().encode("a long browser passphrase", "browsersalt1234")
    tenant.user.save(update_fields=["password"])
    browser.get(gateway.url + "/login/")
    browser.find_element(By.NAME, "username").send_keys(tenant.user.email)
    browser.find_element(By.NAME, "password").send_keys("a long browser passphrase")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    WebDriverWait(browser, 15).until(lambda b: "/login/" not in b.current_url)
    for request_id in ids:
        browser.get(f"{gateway.url}/o/acme/requests/{request_id}/")
        call = browser.find_element(By.CSS_SELECTOR, ".msg.answer .tool-call")
        assert call.find_element(By.CSS_SELECTOR, ".tool-name").text == "get_weather"
        assert json.loads(call.find_element(By.CSS_SELECTOR, ".tool-args").text) == ARGUMENTS
        assert call.is_displayed()
