"""The mock LLM provider (bench/mock_provider.py) against the official SDKs.

No Django and no database here: these are plain pytest functions, so they
also run with ``-p no:django``.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from bench.mock_provider import MockProvider

ROOT = Path(__file__).resolve().parent.parent
CONTENT = "word1 word2 word3 word4 word5 "
MESSAGES = [{"role": "user", "content": "tell me a short story"}]  # 5 words -> 5 prompt tokens


@pytest.fixture
def settings():
    """A stand-in for pytest-django's ``settings``, which tests/conftest.py's autouse fixture asks for.

    Nothing here touches Django, so this module also runs with ``-p no:django``.
    """
    return types.SimpleNamespace()


@pytest.fixture(scope="module")
def mp():
    with MockProvider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _fresh(mp):
    mp.reset()


def oai(mp: MockProvider, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=mp.url + "/v1", api_key="x", max_retries=0, default_headers=headers or None)


def claude(mp: MockProvider, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=mp.url, api_key="x", max_retries=0, default_headers=headers or None)


def raw_exchange(mp: MockProvider, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", mp.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


# --------------------------------------------------------------------------- OpenAI


def test_chat_completion_plain():
    with MockProvider() as mp:  # its own instance, so the id counter starts at 1
        completion = oai(mp).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.id == "chatcmpl-mock-1"
    assert completion.object == "chat.completion" and completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == CONTENT
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (5, 5, 10)
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_chat_stream_without_usage_has_no_usage(mp):
    chunks = list(oai(mp).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o-mini" for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-mock-")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == CONTENT
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_stream_with_include_usage_ends_with_a_usage_chunk(mp):
    client = oai(mp, **{"X-Mock-Chunks": "3", "X-Mock-Cached-Tokens": "2"})
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (5, 3, 8)
    assert last.usage.prompt_tokens_details.cached_tokens == 2
    assert all(c.usage is None for c in body)
    assert "".join(c.choices[0].delta.content or "" for c in body) == "word1 word2 word3 "

    plain = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert plain.usage.model_dump() == last.usage.model_dump()  # plain and streamed agree


def test_chat_stream_wire_format(mp):
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", mp.url + "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["transfer-encoding"] == "chunked"
        text = response.read().decode()
    events = text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: {") for e in events[:-2])


def test_prompt_tokens_count_words_of_every_message_and_text_parts(mp):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is  in\nthis"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    completion = oai(mp).chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert completion.usage.prompt_tokens == 6
    empty = oai(mp).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": ""}])
    assert empty.usage.prompt_tokens == 1  # never zero


def test_chunk_count_and_zero_chunks(mp):
    completion = oai(mp, **{"X-Mock-Chunks": "2"}).chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].message.content == "word1 word2 "
    assert completion.usage.completion_tokens == 2
    empty = oai(mp, **{"X-Mock-Chunks": "0"}).chat.completions.create(model="m", messages=MESSAGES)
    assert empty.choices[0].message.content == "" and empty.usage.completion_tokens == 0


def test_completions_plain_and_streamed(mp):
    client = oai(mp)
    plain = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="one two three")
    assert plain.id.startswith("cmpl-mock-") and plain.model == "gpt-3.5-turbo-instruct"
    assert plain.choices[0].text == CONTENT
    assert (plain.usage.prompt_tokens, plain.usage.completion_tokens) == (3, 5)

    chunks = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["one two", "three"],
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == CONTENT
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


def test_embeddings_default_base64_and_float(mp):
    client = oai(mp)
    result = client.embeddings.create(model="text-embedding-3-small", input="a b c d")
    assert mp.requests()[-1]["json"]["encoding_format"] == "base64"  # the SDK's default
    assert result.model == "text-embedding-3-small"
    assert len(result.data) == 1 and len(result.data[0].embedding) == 8
    assert result.usage.prompt_tokens == 4 and result.usage.total_tokens == 4

    floats = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in floats.data)
    assert floats.usage.prompt_tokens == 3
    again = client.embeddings.create(model="text-embedding-3-small", input="a b", encoding_format="float")
    assert again.data[0].embedding == floats.data[0].embedding  # deterministic per input

    raw = httpx.post(mp.url + "/v1/embeddings", json={"model": "e", "input": "a b c d", "encoding_format": "base64"})
    vector = struct.unpack("<8f", base64.b64decode(raw.json()["data"][0]["embedding"]))
    assert list(vector) == result.data[0].embedding


def test_models_list_and_model(mp):
    models = oai(mp).models.list()
    assert "gpt-4o-mini" in [m.id for m in models.data]
    assert oai(mp).models.retrieve("gpt-4o").id == "gpt-4o"
    response = httpx.get(mp.url + "/v1/models?limit=2")
    assert response.status_code == 200 and response.json()["object"] == "list"
    assert mp.requests()[-1]["path"] == "/v1/models?limit=2"


def test_responses_api_plain_and_streamed(mp):
    client = oai(mp, **{"X-Mock-Cached-Tokens": "1"})
    response = client.responses.create(model="gpt-4.1-mini", input="say hello to me")
    assert response.id.startswith("resp_mock_") and response.model == "gpt-4.1-mini"
    assert response.output_text == CONTENT
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (4, 5, 9)
    assert response.usage.input_tokens_details.cached_tokens == 1

    events = list(client.responses.create(model="gpt-4.1-mini", stream=True,
                                          input=[{"role": "user", "content": "say hello"}]))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == CONTENT
    assert events[-1].response.usage.input_tokens == 2
    with client.responses.stream(model="gpt-4.1-mini", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == CONTENT


def test_azure_deployment_path_is_a_chat_completion(mp):
    azure = openai.AzureOpenAI(azure_endpoint=mp.url, api_key="azure-key", api_version="2024-10-21", max_retries=0)
    completion = azure.chat.completions.create(model="my-deployment", messages=MESSAGES)
    assert completion.choices[0].message.content == CONTENT and completion.model == "my-deployment"
    received = mp.requests()[-1]
    assert received["path"] == "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    assert received["headers"]["api-key"] == "azure-key"

    # Azure bodies may leave the model out: the deployment name is served.
    raw = httpx.post(mp.url + "/openai/deployments/dep-2/chat/completions?api-version=x", json={"messages": MESSAGES})
    assert raw.json()["model"] == "dep-2"
    assert httpx.post(mp.url + "/openai/deployments/d/embeddings", json={"input": "a"}).status_code == 200


def test_unknown_path_is_404_in_openai_format(mp):
    response = httpx.post(mp.url + "/v1/nope", json={})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "/v1/nope" in response.json()["error"]["message"]
    assert httpx.get(mp.url + "/v1/chat/completions").status_code == 404
    with pytest.raises(openai.NotFoundError):
        oai(mp).post("/nothing-here", cast_to=object, body={})


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_message_plain(mp):
    message = claude(mp).messages.create(model="claude-3-5-sonnet-20241022", max_tokens=50, system="you are terse",
                                         messages=[{"role": "user", "content": "hello there claude"}])
    assert message.id.startswith("msg_mock_") and message.type == "message" and message.role == "assistant"
    assert message.model == "claude-3-5-sonnet-20241022"
    assert message.content[0].type == "text" and message.content[0].text == CONTENT
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 5)
    assert message.usage.cache_read_input_tokens == 0


def test_anthropic_message_streamed_usage_from_final_message(mp):
    client = claude(mp, **{"X-Mock-Chunks": "4"})
    content = [{"type": "text", "text": "hello there"}, {"type": "text", "text": "claude"}]
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=50,
                                messages=[{"role": "user", "content": content}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "word1 word2 word3 word4 "
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)
    assert stream.response.headers["content-type"] == "text/event-stream"


def test_anthropic_stream_event_sequence(mp):
    body = {"model": "claude-3-5-sonnet-20241022", "max_tokens": 10, "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", mp.url + "/v1/messages", json=body, headers={"X-Mock-Chunks": "2"}) as response:
        assert response.headers["content-type"] == "text/event-stream"
        text = response.read().decode()
    names = [line[len("event: "):] for line in text.split("\n") if line.startswith("event: ")]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]

    # The SDK parses every event (it drops the pings).
    events = list(claude(mp, **{"X-Mock-Chunks": "2"}).messages.create(
        model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES, stream=True))
    assert [e.type for e in events] == [name for name in names if name != "ping"]
    assert events[0].message.usage.input_tokens == 5 and events[0].message.id.startswith("msg_mock_")
    assert events[2].delta.type == "text_delta" and events[2].delta.text == "word1 "
    assert events[5].usage.output_tokens == 2 and events[5].delta.stop_reason == "end_turn"


def test_anthropic_cached_tokens_are_cache_reads_outside_input_tokens(mp):
    client = claude(mp, **{"X-Mock-Cached-Tokens": "2"})
    plain = client.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES)
    assert (plain.usage.input_tokens, plain.usage.cache_read_input_tokens) == (3, 2)
    with client.messages.stream(model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (3, 2, 5)


def test_anthropic_count_tokens(mp):
    assert claude(mp).messages.count_tokens(model="claude-3-5-sonnet-20241022", messages=MESSAGES).input_tokens == 5


# --------------------------------------------------------------------------- failure controls


def test_status_control_openai_and_anthropic_error_formats(mp):
    with pytest.raises(openai.RateLimitError) as info:
        oai(mp, **{"X-Mock-Status": "429", "X-Mock-Retry-After": "7"}).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES)
    response = info.value.response
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "rate_limit_exceeded"

    with pytest.raises(anthropic.APIStatusError) as info:
        claude(mp, **{"X-Mock-Status": "529"}).messages.create(model="c", max_tokens=5, messages=MESSAGES)
    assert info.value.status_code == 529
    assert info.value.response.json() == {
        "type": "error", "error": {"type": "overloaded_error", "message": info.value.body["error"]["message"]}}
    assert "retry-after" not in info.value.response.headers

    with pytest.raises(anthropic.APIStatusError) as info:  # streamed requests fail before streaming
        with claude(mp, **{"X-Mock-Status": "500"}).messages.stream(model="c", max_tokens=5, messages=MESSAGES) as s:
            s.get_final_message()
    assert info.value.status_code == 500 and info.value.body["error"]["type"] == "api_error"


def test_fail_times_fails_the_first_n_requests_of_a_key(mp):
    failing = oai(mp, **{"X-Mock-Fail-Times": "2", "X-Mock-Key": "retry-1", "X-Mock-Status": "503"})
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as info:
            failing.chat.completions.create(model="m", messages=MESSAGES)
        assert info.value.status_code == 503
    assert failing.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == CONTENT

    # Another key has its own counter; the default status is 500.
    other = oai(mp, **{"X-Mock-Fail-Times": "1", "X-Mock-Key": "retry-2"})
    with pytest.raises(openai.InternalServerError) as info:
        other.chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.status_code == 500
    other.chat.completions.create(model="m", messages=MESSAGES)

    mp.reset()  # reset clears the counters
    with pytest.raises(openai.InternalServerError):
        other.chat.completions.create(model="m", messages=MESSAGES)


def test_sdk_retries_succeed_after_fail_times(mp):
    client = openai.OpenAI(base_url=mp.url + "/v1", api_key="x", max_retries=2,
                           default_headers={"X-Mock-Fail-Times": "2", "X-Mock-Key": "sdk-retry",
                                            "X-Mock-Status": "429", "X-Mock-Retry-After": "0"})
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == CONTENT
    assert len(mp.requests()) == 3  # failed attempts are recorded too


def test_mock_fail_model_fails_with_its_status(mp):
    with pytest.raises(openai.InternalServerError) as info:
        oai(mp).chat.completions.create(model="mock-fail-503", messages=MESSAGES)
    assert info.value.status_code == 503
    with pytest.raises(anthropic.RateLimitError):
        claude(mp).messages.create(model="mock-fail-429", max_tokens=5, messages=MESSAGES)


def test_bad_control_value_is_a_400(mp):
    with pytest.raises(openai.BadRequestError, match="x-mock-chunks"):
        oai(mp, **{"X-Mock-Chunks": "lots"}).chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="X-Mock-Fault"):
        oai(mp, **{"X-Mock-Fault": "explode"}).chat.completions.create(model="m", messages=MESSAGES)


def test_fault_reset_closes_with_a_tcp_reset(mp):
    request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Mock-Fault: reset\r\nContent-Length: 2\r\n\r\n{}"
    with pytest.raises(ConnectionResetError):
        raw_exchange(mp, request)
    with pytest.raises(openai.APIConnectionError):
        oai(mp, **{"X-Mock-Fault": "reset"}).chat.completions.create(model="m", messages=MESSAGES)


def test_fault_hang_never_answers(mp):
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(mp.url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES},
                   headers={"X-Mock-Fault": "hang"}, timeout=0.3)
    assert time.monotonic() - started >= 0.3


def test_fault_garbage_is_not_http(mp):
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(mp.url + "/v1/chat/completions", json={"model": "m"}, headers={"X-Mock-Fault": "garbage"})


def test_fault_truncate_cuts_streams_and_bodies(mp):
    headers = {"X-Mock-Fault": "truncate", "X-Mock-Chunks": "6"}
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", mp.url + "/v1/chat/completions", headers=headers,
                          json={"model": "m", "messages": MESSAGES, "stream": True}) as response:
            for line in response.iter_lines():
                received.append(line)
    events = [line for line in received if line.startswith("data: ")]
    assert len(events) == 1 + 3  # the role chunk, then half of the six content chunks
    assert "data: [DONE]" not in events

    seen = []
    with pytest.raises(Exception) as info:  # the SDKs surface their HTTP library's protocol error
        with claude(mp, **headers).messages.stream(model="c", max_tokens=5, messages=MESSAGES) as stream:
            for event in stream:
                seen.append(event.type)
    assert "RemoteProtocolError" in type(info.value).__name__ or isinstance(info.value, anthropic.APIConnectionError)
    assert "message_stop" not in seen and seen.count("content_block_delta") == 3

    with pytest.raises(httpx.RemoteProtocolError):  # a plain body stops halfway
        httpx.post(mp.url + "/v1/chat/completions", headers=headers, json={"model": "m", "messages": MESSAGES})


def test_fail_times_gates_faults_too(mp):
    headers = {"X-Mock-Fault": "reset", "X-Mock-Fail-Times": "1", "X-Mock-Key": "flaky-conn"}
    with pytest.raises(httpx.TransportError):
        httpx.post(mp.url + "/v1/chat/completions", headers=headers, json={"model": "m", "messages": MESSAGES})
    response = httpx.post(mp.url + "/v1/chat/completions", headers=headers, json={"model": "m", "messages": MESSAGES})
    assert response.status_code == 200


def test_delay_and_chunk_delay(mp):
    started = time.monotonic()
    oai(mp, **{"X-Mock-Delay-Ms": "200"}).chat.completions.create(model="m", messages=MESSAGES)
    assert time.monotonic() - started >= 0.2

    stream = oai(mp, **{"X-Mock-Chunk-Delay-Ms": "60", "X-Mock-Chunks": "4"}).chat.completions.create(
        model="m", messages=MESSAGES, stream=True)
    arrivals = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 3 * 0.06 * 0.9


def test_a_slow_request_does_not_hold_up_others(mp):
    slow = httpx.Client(base_url=mp.url, headers={"X-Mock-Delay-Ms": "500"})
    with httpx.Client(base_url=mp.url) as fast:
        thread = threading.Thread(target=slow.post, args=("/v1/chat/completions",),
                                  kwargs={"json": {"model": "m", "messages": MESSAGES}})
        thread.start()
        time.sleep(0.05)
        started = time.monotonic()
        assert fast.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES}).status_code == 200
        assert time.monotonic() - started < 0.4
        thread.join()
    slow.close()


# --------------------------------------------------------------------------- inspection


def test_requests_are_recorded(mp):
    oai(mp, **{"X-Custom": "yes"}).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, user="u1")
    httpx.get(mp.url + "/v1/models?a=1&b=2")
    first, second = mp.requests()
    assert first["method"] == "POST" and first["path"] == "/v1/chat/completions"
    assert first["headers"]["authorization"] == "Bearer x" and first["headers"]["x-custom"] == "yes"
    assert all(name == name.lower() for name in first["headers"])
    assert first["json"] == {"model": "gpt-4o-mini", "messages": MESSAGES, "user": "u1"}
    assert json.loads(first["body"]) == first["json"]
    assert (second["method"], second["path"], second["body"], second["json"]) == ("GET", "/v1/models?a=1&b=2", "", None)


def test_inspection_endpoints(mp):
    httpx.post(mp.url + "/v1/embeddings", json={"model": "e", "input": "x"})
    httpx.post(mp.url + "/v1/embeddings", content=b"not json", headers={"X-Mock-Chunks": "1"})
    listed = httpx.get(mp.url + "/__mock/requests").json()
    assert [r["path"] for r in listed] == ["/v1/embeddings", "/v1/embeddings"]
    assert listed[1]["body"] == "not json" and listed[1]["json"] is None
    assert listed[1]["headers"]["x-mock-chunks"] == "1"

    assert httpx.post(mp.url + "/__mock/reset").json() == {"ok": True}
    assert httpx.get(mp.url + "/__mock/requests").json() == []
    assert mp.requests() == []  # the inspection endpoints are not themselves recorded


def test_record_is_bounded():
    with MockProvider(history=3) as mp:
        with httpx.Client(base_url=mp.url) as client:
            for i in range(5):
                client.get(f"/v1/models?i={i}")
        assert [r["path"] for r in mp.requests()] == [f"/v1/models?i={i}" for i in (2, 3, 4)]


# --------------------------------------------------------------------------- HTTP details


def test_chunked_request_body(mp):
    body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
    response = httpx.post(mp.url + "/v1/chat/completions", content=iter([body[:10], body[10:]]))
    assert response.status_code == 200 and response.json()["usage"]["prompt_tokens"] == 5
    assert mp.requests()[-1]["headers"]["transfer-encoding"] == "chunked"
    assert mp.requests()[-1]["json"]["messages"] == MESSAGES


def test_keep_alive_pipelining_and_connection_close(mp):
    body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
    one = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    last = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Mock-Delay-Ms: 20\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    received = raw_exchange(mp, one + one + last)  # pipelined; the server closes after the third
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert received.count(b'"content":"word1 word2 word3 word4 word5 "') == 3
    assert received.count(b"Connection: close") == 1


def test_http10_stream_ends_with_the_connection(mp):
    body = json.dumps({"model": "m", "messages": MESSAGES, "stream": True}).encode()
    request = b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    received = raw_exchange(mp, request)
    head, _, payload = received.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert payload.startswith(b"data: {") and payload.endswith(b"data: [DONE]\n\n")


def test_expect_100_continue(mp):
    body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
    with socket.create_connection(("127.0.0.1", mp.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_stop_ends_hung_and_streaming_connections():
    mp = MockProvider().start()
    hung = socket.create_connection(("127.0.0.1", mp.port))
    hung.sendall(b"GET /v1/models HTTP/1.1\r\nX-Mock-Fault: hang\r\n\r\n")
    slow = socket.create_connection(("127.0.0.1", mp.port))
    body = json.dumps({"model": "m", "messages": MESSAGES, "stream": True}).encode()
    slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nX-Mock-Chunk-Delay-Ms: 10000\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(0.2)
    started = time.monotonic()
    mp.stop()
    assert time.monotonic() - started < 2
    for sock in (hung, slow):
        sock.settimeout(2)
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        sock.close()


def test_malformed_request_is_400_and_closed(mp):
    assert raw_exchange(mp, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request")


def test_command_line_server():
    command = [sys.executable, "-m", "bench.mock_provider", "--host", "127.0.0.1", "--port", "0"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stdout.readline().strip()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.split("listening on ", 1)[1]
            response = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
            assert response.json()["choices"][0]["message"]["content"] == CONTENT
        finally:
            proc.terminate()
            assert proc.wait(10) == 0  # SIGTERM is a clean stop


# --------------------------------------------------------------------------- what real servers do (issue #15)

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}
WEATHER_ARGS = {"city": "mock city", "days": 1, "unit": "celsius"}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]


def test_chat_tool_calls_plain_and_streamed(mp):
    client = oai(mp, **{"X-Mock-Chunks": "6"})
    choice = {"type": "function", "function": {"name": "get_weather"}}
    completion = client.chat.completions.create(model="m", messages=MESSAGES, tools=OPENAI_TOOLS, tool_choice=choice)
    [call] = completion.choices[0].message.tool_calls
    assert completion.choices[0].finish_reason == "tool_calls" and completion.choices[0].message.content is None
    assert call.id.startswith("call_mock_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS

    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, tools=OPENAI_TOOLS,
                                                 tool_choice=choice, stream=True))
    fragments = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert fragments[0].id and fragments[0].function.name == "get_weather" and fragments[0].function.arguments == ""
    assert len(fragments) == 1 + 6 and all(f.id is None and f.function.name is None for f in fragments[1:])
    assert json.loads("".join(f.function.arguments for f in fragments)) == WEATHER_ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # Without a tool_choice the first tool is called; after a tool result the model answers in text.
    first = client.chat.completions.create(model="m", messages=MESSAGES, tools=OPENAI_TOOLS)
    assert first.choices[0].message.tool_calls[0].function.name == "get_time"
    done = client.chat.completions.create(model="m", tools=OPENAI_TOOLS, messages=[
        *MESSAGES, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                         "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "noon"}])
    assert done.choices[0].message.content == "word1 word2 word3 word4 word5 word6 "
    assert client.chat.completions.create(model="m", messages=MESSAGES, tools=OPENAI_TOOLS,
                                          tool_choice="none").choices[0].message.tool_calls is None


def test_anthropic_tool_use_plain_and_streamed(mp):
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
    client = claude(mp, **{"X-Mock-Chunks": "4"})
    message = client.messages.create(model="c", max_tokens=50, messages=MESSAGES, tools=tools)
    assert message.stop_reason == "tool_use"
    assert (message.content[0].type, message.content[0].name, message.content[0].input) == (
        "tool_use", "get_weather", WEATHER_ARGS)
    events = list(client.messages.create(model="c", max_tokens=50, messages=MESSAGES, tools=tools, stream=True))
    partial = [e.delta.partial_json for e in events if e.type == "content_block_delta"]
    assert partial[0] == "" and len(partial) == 1 + 4 and json.loads("".join(partial)) == WEATHER_ARGS
    assert events[1].content_block.input == {} and events[-1].type == "message_stop"
    with client.messages.stream(model="c", max_tokens=50, messages=MESSAGES, tools=tools) as stream:
        assert stream.get_final_message().content[0].input == WEATHER_ARGS
    after = client.messages.create(model="c", max_tokens=50, tools=tools, messages=[
        *MESSAGES, {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather",
                                                      "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}])
    assert after.content[0].type == "text"


def test_responses_function_calls_plain_and_streamed(mp):
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER}]
    client = oai(mp)
    [item] = client.responses.create(model="m", input="weather?", tools=tools).output
    assert (item.type, item.name, json.loads(item.arguments)) == ("function_call", "get_weather", WEATHER_ARGS)
    events = list(client.responses.create(model="m", input="weather?", tools=tools, stream=True))
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert json.loads("".join(deltas)) == WEATHER_ARGS and len(deltas) == 5
    assert events[-1].type == "response.completed" and events[-1].response.output[0].name == "get_weather"
    assert events[2].type == "response.output_item.added" and events[2].item.arguments == ""
    answer = client.responses.create(model="m", tools=tools, input=[
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"}])
    assert answer.output_text == CONTENT


def test_models_list_and_count_tokens_carry_no_usage(mp):
    assert "usage" not in httpx.get(mp.url + "/v1/models").json()
    counted = httpx.post(mp.url + "/v1/messages/count_tokens", headers={"anthropic-version": "2023-06-01"},
                         json={"model": "c", "messages": MESSAGES}).json()
    assert counted == {"input_tokens": 5}


def _raw_stream_until(mp, path: str, body: dict, headers: dict, marker: bytes) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", mp.port), timeout=5)
    payload = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    received = b""
    while marker not in received:
        received += sock.recv(65536)
    return sock, received


@pytest.mark.parametrize("path, body, final", [
    ("/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True}, b"data: [DONE]\n\n"),
    ("/v1/messages", {"model": "c", "max_tokens": 5, "messages": MESSAGES, "stream": True},
     b'{"type":"message_stop"}\n\n'),
    ("/v1/responses", {"model": "m", "input": "hi", "stream": True}, b"event: response.completed"),
])
def test_end_delay_leaves_a_gap_between_the_final_event_and_the_end_of_the_body(mp, path, body, final):
    sock, received = _raw_stream_until(mp, path, body, {"X-Mock-End-Delay-Ms": "1500"}, final)
    with sock:
        assert not received.endswith(b"0\r\n\r\n")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):  # the final event is there, the end of the body is not
            while True:
                received += sock.recv(65536)
                assert not received.endswith(b"0\r\n\r\n")
        sock.settimeout(5)
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(65536)


def test_fault_no_final_event_ends_the_body_cleanly_without_it(mp):
    headers = {"X-Mock-Fault": "no-final-event"}
    response = httpx.post(mp.url + "/v1/chat/completions", headers=headers,
                          json={"model": "m", "messages": MESSAGES, "stream": True})
    assert response.status_code == 200 and b"word5" in response.content and b"[DONE]" not in response.content
    events = list(claude(mp, **headers).messages.create(model="c", max_tokens=5, messages=MESSAGES, stream=True))
    assert events[-1].type == "message_delta"
    events = list(oai(mp, **headers).responses.create(model="m", input="hi", stream=True))
    assert events[-1].type == "response.output_item.done"


def test_usage_chunk_shapes(mp):
    def last_chunk(shape: str) -> dict:
        response = httpx.post(mp.url + "/v1/chat/completions", headers={"X-Mock-Usage-Chunk": shape},
                              json={"model": "m", "messages": MESSAGES, "stream": True,
                                    "stream_options": {"include_usage": True}})
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        return json.loads(events[-2])

    assert last_chunk("openai")["choices"] == [] and last_chunk("openai")["usage"]["total_tokens"] == 10
    assert last_chunk("litellm")["choices"] == [{"index": 0, "delta": {}}]
    finish = last_chunk("finish")
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["usage"]["total_tokens"] == 10
    bad = httpx.post(mp.url + "/v1/chat/completions", headers={"X-Mock-Usage-Chunk": "odd"},
                     json={"model": "m", "messages": MESSAGES, "stream": True,
                           "stream_options": {"include_usage": True}})
    assert bad.status_code == 400 and "X-Mock-Usage-Chunk" in bad.json()["error"]["message"]


def test_tls_with_a_certificate_of_a_test_ca(tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    with MockProvider(ssl_context=context) as mp:
        assert mp.url.startswith("https://127.0.0.1:")
        trusted = openai.OpenAI(base_url=mp.url + "/v1", api_key="x", max_retries=0,
                                http_client=httpx.Client(verify=ssl.create_default_context(
                                    cafile=str(tmp_path / "ca.pem"))))
        assert trusted.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == CONTENT
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(mp.url + "/v1/models")  # the system's CAs do not know the test CA
