"""Streams as real servers send them (issue #15): the body ends a while after the final event.

A stream the client read to its final event is complete (logged so, charged to token limits,
cached), whether or not the client waits for the end of the body; a client that leaves before
the final event is logged cancelled. The usage chunk the gateway asked for never reaches the
client, whatever its shape.
"""

import time
import uuid

import anthropic
import httpx
import openai
import pytest

from analytics.pricing import cost_usd

from .conftest import wait_for_log
from .test_ratelimit import forget_rate_limit_counters

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "tell me a short story"}]  # 5 words -> 5 prompt tokens at the mock
# Real servers (LiteLLM's proxy among them) end the body a little after the final event.
LATE_END = {"X-Mock-End-Delay-Ms": "300"}


@pytest.fixture(autouse=True, scope="module")
def _fresh_counters():
    forget_rate_limit_counters()


def oai(gateway, tenant, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key="sk-provider-secret", max_retries=0,
                         default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", **LATE_END, **headers})


def claude(gateway, tenant, **headers) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key="sk-ant-secret", max_retries=0,
                               default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", **LATE_END, **headers})


def assert_complete(log, prompt: int = 5, completion: int = 5) -> None:
    assert not log.cancelled and log.error == "", (log.cancelled, log.error)
    assert log.streamed and log.status == 200
    assert (log.prompt_tokens, log.completion_tokens) == (prompt, completion)


def test_openai_sdk_stream_read_to_the_end_is_complete(gateway, tenant):
    request_id = str(uuid.uuid4())
    stream = oai(gateway, tenant, **{"Helicone-Request-Id": request_id}).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "word1 word2 word3 word4 word5 "
    log = wait_for_log(request_id)
    assert_complete(log)
    assert log.cost_usd == cost_usd("openai", "gpt-4o-mini", 5, 5)


def test_every_one_of_many_streams_is_complete(gateway, tenant):
    c = oai(gateway, tenant)
    ids = [str(uuid.uuid4()) for _ in range(8)]
    for request_id in ids:
        list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                       extra_headers={"Helicone-Request-Id": request_id}))
    logs = [wait_for_log(request_id) for request_id in ids]
    assert [(log.cancelled, log.error) for log in logs] == [(False, "")] * 8


def test_anthropic_sdk_streams_are_complete(gateway, tenant):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with claude(gateway, tenant, **{"Helicone-Request-Id": first}).messages.stream(
            model="claude-3-5-haiku-20241022", max_tokens=100, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "word1 word2 word3 word4 word5 "
    events = list(claude(gateway, tenant, **{"Helicone-Request-Id": second}).messages.create(
        model="claude-3-5-haiku-20241022", max_tokens=100, messages=MESSAGES, stream=True))
    assert events[-1].type == "message_stop"
    for request_id in (first, second):
        log = wait_for_log(request_id)
        assert_complete(log)
        assert log.cost_usd == cost_usd("anthropic", "claude-3-5-haiku-20241022", 5, 5)


def test_langchain_streaming_is_complete(gateway, tenant):
    from langchain_openai import ChatOpenAI

    request_id = str(uuid.uuid4())
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=gateway.url + "/oai/v1", api_key="sk-provider-secret",
                     streaming=True, max_retries=0,
                     default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "Helicone-Request-Id": request_id,
                                      **LATE_END})
    text = "".join(chunk.content for chunk in llm.stream("tell me a short story"))
    assert text == "word1 word2 word3 word4 word5 "
    assert llm.invoke("tell me a short story").content == "word1 word2 word3 word4 word5 "  # streams too
    assert_complete(wait_for_log(request_id))


def test_fully_read_streams_are_charged_to_token_limits(gateway, tenant):
    user = uuid.uuid4().hex
    policy = {"Helicone-RateLimit-Policy": "1000;w=600;u=token;s=user", "Helicone-User-Id": user}
    c = oai(gateway, tenant, **policy)
    for _ in range(3):
        list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    def remaining() -> int:
        # An answer without usage is charged nothing: a probe that reads the counter as it is.
        response = httpx.post(gateway.url + "/oai/v1/chat/completions", timeout=10,
                              json={"model": "gpt-4o-mini", "messages": MESSAGES},
                              headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Mock-Status": "400", **policy})
        assert response.status_code == 400
        return int(response.headers["helicone-ratelimit-remaining"])

    deadline = time.monotonic() + 10
    while (left := remaining()) != 970 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == 970, "three streams of 10 tokens each are charged"


def test_fully_read_streams_are_cached_and_replayed(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    messages = [{"role": "user", "content": f"cache this stream {marker}"}]
    c = oai(gateway, tenant, **{"Helicone-Cache-Enabled": "true"})
    outcomes = []
    for _ in range(30):
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, stream=True)
        text = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
        assert text == "word1 word2 word3 word4 word5 "
        outcomes.append(raw.headers["helicone-cache"])
        if outcomes[-1] == "HIT":
            break
        time.sleep(0.1)
    assert outcomes[-1] == "HIT", outcomes
    assert outcomes.count("MISS") <= 3, outcomes
    assert sum(1 for r in mock_provider.requests() if marker in r["body"]) == outcomes.count("MISS")


def test_a_client_that_leaves_early_is_logged_cancelled(gateway, tenant):
    request_id = str(uuid.uuid4())
    c = oai(gateway, tenant, **{"Helicone-Request-Id": request_id, "X-Mock-Chunks": "50",
                                "X-Mock-Chunk-Delay-Ms": "50"})
    stream = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    log = wait_for_log(request_id)
    assert log.cancelled and log.error == "client disconnected"
    assert "word1" in log.response_body and "word50" not in log.response_body


def test_a_body_that_ends_without_the_final_event_is_complete_but_flagged(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"unfinished {marker}"}], "stream": True}
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Mock-Fault": "no-final-event",
               "Helicone-Cache-Enabled": "true"}
    for _ in range(3):
        response = httpx.post(gateway.url + "/oai/v1/chat/completions", json=body, headers=headers, timeout=10)
        assert response.status_code == 200 and b"word5" in response.content and b"[DONE]" not in response.content
        assert response.headers["helicone-cache"] == "MISS", "a stream without its final event is never cached"
        time.sleep(0.2)
    log = wait_for_log(response.headers["helicone-id"])
    assert not log.cancelled and log.error == "upstream stream ended before its final event"
    assert (log.prompt_tokens, log.completion_tokens) == (2, 5)


@pytest.mark.parametrize("shape", ["openai", "litellm", "finish"])
def test_the_usage_chunk_the_gateway_asked_for_never_reaches_the_client(gateway, tenant, mock_provider, shape):
    request_id = str(uuid.uuid4())
    mock_provider.reset()
    chunks = list(oai(gateway, tenant, **{"X-Mock-Usage-Chunk": shape, "Helicone-Request-Id": request_id})
                  .chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert mock_provider.requests()[-1]["json"]["stream_options"] == {"include_usage": True}
    assert all(chunk.usage is None for chunk in chunks)
    # Role, five words, the finish: the same chunks as a stream that never asked for usage.
    assert len(chunks) == 7 and chunks[-1].choices[0].finish_reason == "stop"
    assert_complete(wait_for_log(request_id))


def test_a_usage_chunk_the_client_asked_for_is_kept_whatever_its_shape(gateway, tenant):
    chunks = list(oai(gateway, tenant, **{"X-Mock-Usage-Chunk": "litellm"}).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert [c.usage.total_tokens for c in chunks if c.usage is not None] == [10]
