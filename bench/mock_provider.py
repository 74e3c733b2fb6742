"""A fast, scriptable mock of the OpenAI and Anthropic HTTP APIs.

The test suite and the load benchmark point the gateway's upstreams here
instead of at real providers. It speaks the real wire formats closely enough
for the official ``openai`` and ``anthropic`` SDKs to parse every response,
plain and streamed, and it is fast enough never to be the bottleneck of a
gateway benchmark: a raw ``asyncio.Protocol`` with a small HTTP/1.1 parser and
no framework answers about 15,000 plain or 12,000 streamed chat completions a
second on one core (wrk, keep-alive, stdlib event loop; uvloop is used when it
happens to be installed). HTTP/1.1 keep-alive and pipelining, Content-Length
and chunked request bodies; replies carry a Content-Length, streams are
``text/event-stream`` sent with ``Transfer-Encoding: chunked``.

Endpoints
---------
OpenAI: ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/responses`` (plain and ``"stream": true``), ``GET /v1/models`` and
``/v1/models/{id}``; Azure paths
``/openai/deployments/{deployment}/{chat/completions|completions|embeddings}``.
Anthropic: ``POST /v1/messages`` (plain and streamed) and
``/v1/messages/count_tokens``. Anything else is a 404 in OpenAI's error format.
Embeddings are 8 floats per input (or ``dimensions``), deterministic per input,
base64-encoded when asked (the openai SDK asks by default).

Inspection: every request is recorded as ``{"method", "path" (with the query),
"headers" (lowercase names), "body" (text), "json" (parsed, or None), "time"}``.
``GET /__mock/requests`` returns the last 1000, oldest first; ``POST
/__mock/reset`` clears them and the fail counters. These two endpoints are not
themselves recorded.

Deterministic content and usage
-------------------------------
The answer is ``N`` chunks ``"word1 " "word2 " ... "wordN "`` (``N`` = 5 unless
``X-Mock-Chunks``), plain and streamed alike; completion/output tokens = ``N``.
Prompt tokens = whitespace-separated words in every message's content (string
contents, or the ``text`` of text parts), in the completion prompt, the
embedding input or the Responses ``input`` -- at least 1. System prompts and
``instructions`` outside the messages are not counted. ``X-Mock-Cached-Tokens:
C`` reports ``C`` cached prompt tokens: OpenAI's
``usage.prompt_tokens_details.cached_tokens`` (included in ``prompt_tokens``)
and Anthropic's ``cache_read_input_tokens`` (which, as at Anthropic, are *not*
part of ``input_tokens``: input_tokens = max(words - C, 0)). The served
``model`` is the request's model (on Azure paths without one, the deployment).
Ids: ``chatcmpl-mock-<n>``, ``cmpl-mock-<n>``, ``resp_mock_<n>``, ``msg_mock_<n>``.

Controls (request headers, which a gateway passes through)
----------------------------------------------------------
``X-Mock-Delay-Ms: N``        wait N ms before answering (before the headers).
``X-Mock-Chunks: N``          N content chunks (N completion tokens).
``X-Mock-Chunk-Delay-Ms: N``  wait N ms between streamed content chunks.
``X-Mock-Status: N``          answer status N (>= 400) with the provider's error body
                              (Anthropic's for /v1/messages, OpenAI's elsewhere).
``X-Mock-Retry-After: S``     add ``Retry-After: S`` to error answers.
``X-Mock-Fail-Times: N``      with ``X-Mock-Key: K``: only the first N requests
                              carrying K get the status (default 500) or the
                              fault; later ones succeed.
``X-Mock-End-Delay-Ms: N``    streams: wait N ms between the final event (``[DONE]``,
                              ``message_stop``, ``response.completed``) and the end of
                              the body, as real servers do (the fast path sends both at once).
``X-Mock-Usage-Chunk: S``     the usage of a chat stream that asked for it (``stream_options``):
                              ``openai`` (default: a last chunk with ``"choices": []``),
                              ``litellm`` (a last chunk with ``[{"index": 0, "delta": {}}]``,
                              as LiteLLM's proxy sends it) or ``finish`` (on the chunk with
                              the ``finish_reason``, no chunk of its own).
``X-Mock-Fault: F``           ``reset`` (RST, no answer), ``hang`` (never answer),
                              ``garbage`` (bytes that are not HTTP), ``truncate``
                              (half the chunks, then close without the end),
                              ``no-final-event`` (a stream without its final event,
                              the body then ending cleanly).
A body ``"model": "mock-fail-503"`` always fails with that status (for fallback
tests, where the gateway changes the model). A bad control value is a 400.

Tool calls
----------
A request offering function tools (chat ``tools``, Anthropic ``tools`` with an
``input_schema``, Responses ``tools`` of type ``function``) is answered, as a model
would, with a call of the first tool (or the one ``tool_choice`` names), unless
``tool_choice`` is ``none`` or the conversation ends with a tool result (then the
usual text answer follows). Arguments are built from the tool's JSON schema:
``"mock <name>"`` for strings (the first value of an ``enum``), ``1`` for numbers,
``true``, ``[]`` and ``{}`` for the rest. Streamed, the arguments arrive in ``N``
fragments the way each provider sends them: OpenAI ``tool_calls`` deltas
(``finish_reason: "tool_calls"``), Anthropic ``input_json_delta`` events in a
``tool_use`` block (``stop_reason: "tool_use"``), Responses
``response.function_call_arguments.delta`` events of a ``function_call`` item.
Ids: ``call_mock_<n>``, ``toolu_mock_<n>``, ``fc_mock_<n>``.

TLS: ``MockProvider(ssl_context=...)`` (or ``--certfile``/``--keyfile``) serves
HTTPS; ``url`` then starts with ``https://``.

Use
---
``python -m bench.mock_provider --host 127.0.0.1 --port 9000`` prints
``listening on http://127.0.0.1:9000`` once it accepts connections. In Python::

    with MockProvider() as mp:          # background thread, free port
        client = OpenAI(base_url=mp.url + "/v1", api_key="x")
        ...
        mp.requests()[-1]["json"]       # what the client sent
        mp.reset()
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import itertools
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import zlib
from http import HTTPStatus
from typing import Any

__all__ = ["MockApp", "MockProvider", "serve", "main"]

DEFAULT_CHUNKS = 5
HISTORY = 1000
EMBEDDING_DIMENSIONS = 8
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_CHUNKS = 100_000
SYSTEM_FINGERPRINT = "fp_mock"
MODELS = (
    "gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o3-mini", "gpt-3.5-turbo-instruct", "text-embedding-3-small",
    "claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022",
)

# Every body and event is built as an ASCII ``str`` (JSON escapes anything else), so a
# length in characters is a length in bytes and a reply is encoded once, right before writing.
# Compact separators: smaller bodies are less to write, and less for the gateway to parse.
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_REASONS[529] = "Overloaded"  # Anthropic's, not in the registry
_GARBAGE = b"\x00\xff\xfeTHIS IS NOT HTTP\x00\x17\x03garbage\r\n\r\n"
_LINGER_RESET = struct.pack("ii", 1, 0)

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", None),
    409: ("conflict_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class _BadRequest(Exception):
    """A request the mock refuses with a 400 (bad control header, bad JSON body)."""


# --------------------------------------------------------------------------- replies


class _Reply:
    """What to send for one request: a whole JSON body, or SSE events.

    Streams keep their events in three parts so that chunk delays apply
    between content events and ``truncate`` can cut the content in half.
    """

    __slots__ = ("status", "body", "headers", "pre", "content", "post", "chunk_delay", "end_delay")

    def __init__(self, status: int, body: str = "", headers: tuple = (), pre: list | None = None,
                 content: list | None = None, post: list | None = None, chunk_delay: float = 0.0):
        self.status = status
        self.body = body
        self.headers = headers
        self.pre = pre
        self.content = content
        self.post = post
        self.chunk_delay = chunk_delay
        self.end_delay = 0.0  # seconds between the last event and the end of the body

    def head(self, keep_alive: bool, chunked: bool) -> str:
        status = self.status
        if self.pre is None:
            text = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n")
        else:
            text = f"HTTP/1.1 {status} OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            if chunked:
                text += "Transfer-Encoding: chunked\r\n"
        for name, value in self.headers:
            text += f"{name}: {value}\r\n"
        if not keep_alive:
            text += "Connection: close\r\n"
        return text + "\r\n"


def _json_reply(obj: Any, status: int = 200, headers: tuple = ()) -> _Reply:
    return _Reply(status, _dumps(obj), headers)


def _data_event(obj: Any) -> str:
    return "data: " + _dumps(obj) + "\n\n"


def _named_event(name: str, obj: Any) -> str:
    return "event: " + name + "\ndata: " + _dumps(obj) + "\n\n"


def _frame(event: str) -> str:
    """One SSE event as one HTTP/1.1 chunk, as real providers flush them."""
    return "%x\r\n%s\r\n" % (len(event), event)


def _raw(event: str) -> str:
    """HTTP/1.0 has no chunked encoding: events go out as they are and the close ends the body."""
    return event


_QUOTED: dict[Any, str] = {}


def _quote(value: Any) -> str:
    """``value`` as a JSON literal; model names repeat, so they are escaped once."""
    try:
        return _QUOTED[value]
    except (KeyError, TypeError):
        quoted = _dumps(value)
        if isinstance(value, str):
            if len(_QUOTED) > 10_000:  # bounded: a client may send endless distinct names
                _QUOTED.clear()
            _QUOTED[value] = quoted
        return quoted


# --------------------------------------------------------------------------- token counting

_WORDS: list[str] = []


def _content_words(count: int) -> list[str]:
    """``["word1 ", ..., "wordN "]``, extended once and sliced afterwards."""
    if len(_WORDS) < count:
        _WORDS.extend(f"word{i} " for i in range(len(_WORDS) + 1, count + 1))
    return _WORDS[:count]


def _words_in(value: Any) -> int:
    """Words in a content value: a string, a list of text parts, or token lists."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        total = 0
        for item in value:
            if isinstance(item, str):
                total += len(item.split())
            elif isinstance(item, int):
                total += 1  # a prompt or input given as token ids
            elif isinstance(item, list):
                total += _words_in(item)
            elif isinstance(item, dict):
                text = item.get("text")
                if isinstance(text, str) and item.get("type", "text") in ("text", "input_text", "output_text"):
                    total += len(text.split())
        return total
    return 0


def _message_words(messages: Any) -> int:
    if isinstance(messages, str):  # the Responses API's plain-string input
        return len(messages.split())
    if not isinstance(messages, list):
        return 0
    return sum(_words_in(m.get("content")) for m in messages if isinstance(m, dict))


def _embedding(text: Any, dimensions: int) -> list[float]:
    """A deterministic vector per input; multiples of 1/16 so float32 base64 round-trips exactly."""
    seed = zlib.crc32(_dumps(text).encode())
    return [(((seed >> ((4 * i) % 32)) + i) & 15) / 16 - 0.5 for i in range(dimensions)]


# --------------------------------------------------------------------------- tool calls


def _schema_arguments(schema: Any) -> dict:
    """Arguments a model could give for a JSON schema's properties, deterministic per schema."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    arguments: dict[str, Any] = {}
    for name, spec in properties.items():
        spec = spec if isinstance(spec, dict) else {}
        kind = spec.get("type")
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            arguments[name] = spec["enum"][0]
        elif kind in ("integer", "number"):
            arguments[name] = 1
        elif kind == "boolean":
            arguments[name] = True
        elif kind == "array":
            arguments[name] = []
        elif kind == "object":
            arguments[name] = {}
        else:
            arguments[name] = f"mock {name}"
    return arguments


def _chosen_tool(tools: Any, choice: Any, describe) -> tuple[str, dict] | None:
    """(name, arguments) of the tool a model would call, or None for a text answer.

    ``describe(tool)`` gives a tool definition's (name, schema), or None for tools that are
    not functions; ``choice`` is the request's tool_choice."""
    if not isinstance(tools, list) or choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None
    wanted = None
    if isinstance(choice, dict):
        wanted = choice.get("name") or (choice.get("function") or {}).get("name")
    found = [d for d in map(describe, tools) if d is not None]
    for name, schema in found:
        if wanted is None or name == wanted:
            return name, _schema_arguments(schema)
    return None


def _split(text: str, parts: int) -> list[str]:
    """``text`` in ``parts`` consecutive pieces (at least one)."""
    parts = max(1, min(parts, len(text) or 1))
    size = -(-len(text) // parts) or 1
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _openai_tool(tool: Any) -> tuple[str, Any] | None:
    function = tool.get("function") if isinstance(tool, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return function["name"], function.get("parameters")
    return None


def _anthropic_tool(tool: Any) -> tuple[str, Any] | None:
    if isinstance(tool, dict) and isinstance(tool.get("name"), str) and "input_schema" in tool:
        return tool["name"], tool["input_schema"]
    return None


def _responses_tool(tool: Any) -> tuple[str, Any] | None:
    if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("name"), str):
        return tool["name"], tool.get("parameters")
    return None


def _ends_with_tool_result(items: Any) -> bool:
    """Whether a conversation's last turn hands a tool's result back (the model then answers in text)."""
    if not isinstance(items, list) or not items or not isinstance(items[-1], dict):
        return False
    last = items[-1]
    if last.get("role") == "tool" or last.get("type") == "function_call_output":
        return True
    content = last.get("content")
    return isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "tool_result" for p in content)


# The hot replies (chat completions and messages, plain and streamed) are filled-in templates:
# %-formatting a string is about ten times cheaper than json-encoding the same dict, and
# that difference is most of the per-request cost. The other endpoints encode dicts.

_OPENAI_USAGE = (
    '{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,'
    '"prompt_tokens_details":{"cached_tokens":%d,"audio_tokens":0},'
    '"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
    '"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}'
)
_ANTHROPIC_USAGE = '{"input_tokens":%d,"cache_creation_input_tokens":0,"cache_read_input_tokens":%d,"output_tokens":%d}'

_CHAT = (
    '{"id":"%s","object":"chat.completion","created":%d,"model":%s,"system_fingerprint":"' + SYSTEM_FINGERPRINT + '",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":%s,"refusal":null},'
    '"logprobs":null,"finish_reason":"stop"}],"usage":%s}'
)
_CHUNK_BASE = ('{"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
               '"system_fingerprint":"' + SYSTEM_FINGERPRINT + '"')
_CHUNK_ROLE = (',"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
               '"logprobs":null,"finish_reason":null}]}\n\n')
_CHUNK_CONTENT = ',"choices":[{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":null}]}\n\n'
_CHUNK_STOP = ',"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n'

_MESSAGE = (
    '{"id":"%s","type":"message","role":"assistant","model":%s,"content":[{"type":"text","text":%s}],'
    '"stop_reason":"end_turn","stop_sequence":null,"usage":%s}'
)
_MESSAGE_START = (
    'event: message_start\ndata: {"type":"message_start","message":{"id":"%s","type":"message","role":"assistant",'
    '"model":%s,"content":[],"stop_reason":null,"stop_sequence":null,"usage":%s}}\n\n'
)
_BLOCK_START = ('event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                '"content_block":{"type":"text","text":""}}\n\n')
_PING = 'event: ping\ndata: {"type":"ping"}\n\n'
_BLOCK_DELTA = ('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                '"delta":{"type":"text_delta","text":%s}}\n\n')
_BLOCK_STOP = 'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
_MESSAGE_DELTA = ('event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
                  '"stop_sequence":null},"usage":{"output_tokens":%d}}\n\n')
_MESSAGE_STOP = 'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _openai_usage(prompt: int, completion: int, cached: int) -> str:
    return _OPENAI_USAGE % (prompt, completion, prompt + completion, cached)


def _anthropic_usage(prompt: int, output: int, cached: int) -> str:
    # Anthropic's input_tokens exclude cache reads (OpenAI's prompt_tokens include them).
    return _ANTHROPIC_USAGE % (max(prompt - cached, 0), cached, output)


# --------------------------------------------------------------------------- requests


_CONTROLS = frozenset({
    "x-mock-delay-ms", "x-mock-chunks", "x-mock-chunk-delay-ms", "x-mock-status", "x-mock-retry-after",
    "x-mock-fail-times", "x-mock-key", "x-mock-fault", "x-mock-cached-tokens", "x-mock-end-delay-ms",
    "x-mock-usage-chunk",
})
_USAGE_CHUNKS = ("openai", "litellm", "finish")


class _Request:
    """One parsed request.

    Only what answering needs is read eagerly, by substring search in the
    lowercased head; the header dict is built on first use (control headers,
    inspection). SDK requests carry a dozen or more headers, and parsing
    them all was the largest cost per request.
    """

    __slots__ = ("head", "low", "method", "target", "path", "_headers", "body", "json", "chunked", "length",
                 "keep_alive", "http11", "controls")

    def __init__(self, head: bytes, low: str, method: str, target: str, http11: bool):
        self.head = head
        self.low = low
        self.method = method
        self.target = target
        self.path = target.split("?", 1)[0]
        self._headers: dict[str, str] | None = None
        self.http11 = http11
        self.body = b""
        self.json: Any = None
        # Most requests (every benchmark request) carry no control header; one search tells.
        self.controls = "\r\nx-mock-" in low
        connection = _header_value(low, "connection") or ""
        self.keep_alive = "close" not in connection if http11 else "keep-alive" in connection
        self.chunked = "chunked" in (_header_value(low, "transfer-encoding") or "")
        self.length = 0
        if not self.chunked:
            length = _header_value(low, "content-length")
            if length is not None:
                self.length = int(length)  # ValueError: a 400
                if self.length < 0 or self.length > MAX_BODY_BYTES:
                    raise ValueError("bad Content-Length")

    @property
    def headers(self) -> dict[str, str]:
        """All headers, names lowercased; repeated headers joined with ", "."""
        if self._headers is None:
            text = self.head.decode("latin-1")
            if not text.isascii():  # header values from SDKs are ASCII; read the odd UTF-8 one properly
                text = self.head.decode("utf-8", "replace")
            headers: dict[str, str] = {}
            for line in itertools.islice(text.split("\r\n"), 1, None):
                name, sep, value = line.partition(":")
                if sep:
                    name = name.strip().lower()
                    value = value.strip()
                    headers[name] = headers[name] + ", " + value if name in headers else value
            self._headers = headers
        return self._headers


def _header_value(low: str, name: str) -> str | None:
    """The first value of header ``name`` in a lowercased request head, or None."""
    at = low.find("\r\n" + name + ":")
    if at < 0:
        return None
    start = at + len(name) + 3
    end = low.find("\r\n", start)
    return (low[start:end] if end >= 0 else low[start:]).strip()


def _parse_head(head: bytes) -> _Request:
    """The request line and the few headers that frame the body; ValueError when malformed."""
    text = head.decode("latin-1")
    end = text.find("\r\n")
    parts = (text if end < 0 else text[:end]).split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("bad request line")
    return _Request(head, text.lower(), parts[0], parts[1], parts[2] == "HTTP/1.1")


def _describe(head: bytes, body: bytes, when: float) -> dict:
    """A recorded request as tests see it."""
    req = _parse_head(head)
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return {"method": req.method, "path": req.target, "headers": req.headers,
            "body": body.decode("utf-8", "replace"), "json": parsed, "time": when}


def _dechunk(buf: bytearray) -> tuple[bytes, int] | None:
    """Decode a complete chunked body at the start of ``buf``: (body, bytes used), or None if incomplete."""
    pos = 0
    parts = []
    size_total = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip(), 16)  # ValueError on junk
        pos = eol + 2
        if size == 0:
            while True:  # optional trailers, then an empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        size_total += size
        if size_total > MAX_BODY_BYTES:
            raise ValueError("body too large")
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos:pos + size]))
        if buf[pos + size:pos + size + 2] != b"\r\n":
            raise ValueError("bad chunk framing")
        pos += size + 2


def _int_header(headers: dict[str, str], name: str, default: int) -> int:
    value = headers.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise _BadRequest(f"{name} must not be negative")
    return number


# --------------------------------------------------------------------------- the application


class MockApp:
    """Shared state (recorded requests, fail counters, ids) and the request -> reply logic."""

    def __init__(self, history: int = HISTORY):
        # Raw (head, body, time) tuples of bytes, parsed only when read: such tuples are invisible
        # to the garbage collector, which would otherwise keep re-walking 1000 requests' dicts.
        self.records: collections.deque[tuple[bytes, bytes, float]] = collections.deque(maxlen=history)
        self.fail_counts: dict[str, int] = {}
        self.ids = itertools.count(1)
        self.connections: set[_Connection] = set()

    # -- inspection

    def record(self, req: _Request) -> None:
        self.records.append((req.head, req.body, time.time()))

    def requests(self) -> list[dict]:
        # deque.copy() runs in C under the GIL, so it is safe against the server thread appending.
        return [_describe(head, body, when) for head, body, when in self.records.copy()]

    def reset(self) -> None:
        self.records.clear()
        self.fail_counts.clear()

    def close_connections(self) -> None:
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()

    def inspect(self, req: _Request) -> _Reply:
        if req.method == "GET" and req.path == "/__mock/requests":
            return _json_reply(self.requests())
        if req.method == "POST" and req.path == "/__mock/reset":
            self.reset()
            return _json_reply({"ok": True})
        return self.not_found(req)

    # -- failure controls

    def should_fail(self, headers: dict[str, str]) -> bool:
        """Whether this request gets the status/fault it asks for (X-Mock-Fail-Times gates them)."""
        times = _int_header(headers, "x-mock-fail-times", -1)
        if times < 0:
            return True
        key = headers.get("x-mock-key", "")
        count = self.fail_counts.get(key, 0) + 1
        self.fail_counts[key] = count
        return count <= times

    @staticmethod
    def error(req: _Request, status: int, message: str, headers: tuple = ()) -> _Reply:
        if req.path.startswith("/v1/messages") or req.path == "/v1/complete":
            kind = _ANTHROPIC_ERRORS.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
            return _json_reply({"type": "error", "error": {"type": kind, "message": message}}, status, headers)
        kind, code = _OPENAI_ERRORS.get(status) or (
            ("server_error", None) if status >= 500 else ("invalid_request_error", None))
        return _json_reply({"error": {"message": message, "type": kind, "param": None, "code": code}}, status, headers)

    def not_found(self, req: _Request) -> _Reply:
        return self.error(req, 404, f"Invalid URL ({req.method} {req.path})")

    # -- routing

    def reply(self, req: _Request, failing: bool) -> _Reply:
        if failing:
            headers = req.headers
            # X-Mock-Fail-Times alone means "fail with a 500"; with a fault it means "that fault".
            default = 500 if "x-mock-fail-times" in headers and "x-mock-fault" not in headers else 0
            status = _int_header(headers, "x-mock-status", default)
            if status >= 400:
                return self._requested_error(req, status, "X-Mock-Status")
        method, path = req.method, req.path
        if method == "GET":
            if path == "/v1/models":
                return self.models(req)
            if path.startswith("/v1/models/"):
                return self.model(req, path[len("/v1/models/"):])
            return self.not_found(req)
        if method != "POST":
            return self.not_found(req)

        deployment = None
        if path.startswith("/openai/deployments/"):
            deployment, _, path = path[len("/openai/deployments/"):].partition("/")
            path = "/v1/" + path
        handler = self._POST_ROUTES.get(path)
        if handler is None or (deployment is not None and path not in self._AZURE_PATHS):
            return self.not_found(req)
        data = req.json
        if not isinstance(data, dict):
            raise _BadRequest("the request body must be a JSON object")
        model = data.get("model") or deployment or "mock-model"
        if isinstance(model, str) and model.startswith("mock-fail-"):
            try:
                status = int(model[len("mock-fail-"):])
            except ValueError:
                status = 500
            if not 400 <= status <= 599:
                status = 500
            return self._requested_error(req, status, f"model {model}")
        return handler(self, req, data, model)

    def _requested_error(self, req: _Request, status: int, why: str) -> _Reply:
        retry_after = req.headers.get("x-mock-retry-after")
        extra = (("Retry-After", retry_after),) if retry_after is not None else ()
        return self.error(req, status, f"Mock provider error {status} (requested by {why})", extra)

    def _shape(self, req: _Request) -> tuple[list[str], int, float]:
        """Content chunks, cached tokens and chunk delay (s) the request asks for."""
        if not req.controls:
            return _content_words(DEFAULT_CHUNKS), 0, 0.0
        headers = req.headers
        chunks = min(_int_header(headers, "x-mock-chunks", DEFAULT_CHUNKS), MAX_CHUNKS)
        cached = _int_header(headers, "x-mock-cached-tokens", 0)
        delay = _int_header(headers, "x-mock-chunk-delay-ms", 0) / 1000
        return _content_words(chunks), cached, delay

    # -- OpenAI

    def chat(self, req: _Request, data: dict, model: Any) -> _Reply:
        words, cached, chunk_delay = self._shape(req)
        prompt = max(_message_words(data.get("messages")), 1)
        ident = f"chatcmpl-mock-{next(self.ids)}"
        created = int(time.time())
        usage = _openai_usage(prompt, len(words), cached)
        tool = None
        if "tools" in data and not _ends_with_tool_result(data.get("messages")):
            tool = _chosen_tool(data["tools"], data.get("tool_choice"), _openai_tool)
        if tool is not None:
            return self._chat_tool_call(req, data, model, ident, created, usage, tool, len(words), chunk_delay)
        if not data.get("stream"):
            return _Reply(200, _CHAT % (ident, created, _quote(model), _quote("".join(words)), usage))
        options = data.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        base = _CHUNK_BASE % (ident, created, _quote(model))
        # As OpenAI does: with include_usage every chunk carries "usage":null, and one last
        # chunk with no choices carries the numbers; without it, no usage at all.
        chunk = "data: " + base + (',"usage":null' if include_usage else "")
        return _Reply(200, pre=[chunk + _CHUNK_ROLE],
                      content=[chunk + _CHUNK_CONTENT % _quote(word) for word in words],
                      post=self._chat_post(req, base, chunk, include_usage, usage, _CHUNK_STOP),
                      chunk_delay=chunk_delay)

    @staticmethod
    def _chat_post(req: _Request, base: str, chunk: str, include_usage: bool, usage: str, stop: str) -> list[str]:
        """A chat stream's last events: the finish chunk, the usage (in the shape asked for), [DONE]."""
        shape = "openai"
        if include_usage and req.controls:
            shape = req.headers.get("x-mock-usage-chunk", "openai").strip().lower()
            if shape not in _USAGE_CHUNKS:
                raise _BadRequest(f"unknown X-Mock-Usage-Chunk {shape!r} ({', '.join(_USAGE_CHUNKS)})")
        if shape == "finish":
            return ["data: " + base + ',"usage":' + usage + stop, "data: [DONE]\n\n"]
        post = [chunk + stop]
        if include_usage:
            choices = '[{"index":0,"delta":{}}]' if shape == "litellm" else "[]"
            post.append("data: " + base + ',"choices":' + choices + ',"usage":' + usage + "}\n\n")
        post.append("data: [DONE]\n\n")
        return post

    def _chat_tool_call(self, req: _Request, data: dict, model: Any, ident: str, created: int, usage: str,
                        tool: tuple[str, dict], fragments: int, chunk_delay: float) -> _Reply:
        name, arguments = tool
        call_id = f"call_mock_{next(self.ids)}"
        text = _dumps(arguments)
        if not data.get("stream"):
            message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}]}
            return _Reply(200, '{"id":"%s","object":"chat.completion","created":%d,"model":%s,'
                               '"system_fingerprint":"%s","choices":[{"index":0,"message":%s,"logprobs":null,'
                               '"finish_reason":"tool_calls"}],"usage":%s}'
                          % (ident, created, _quote(model), SYSTEM_FINGERPRINT, _dumps(message), usage))
        options = data.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        base = _CHUNK_BASE % (ident, created, _quote(model))
        chunk = "data: " + base + (',"usage":null' if include_usage else "")

        def delta(value: dict) -> str:
            return chunk + ',"choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":null}]}\n\n' % (
                _dumps(value))

        first = delta({"role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]})
        content = [delta({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                   for piece in _split(text, fragments)]
        stop = ',"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}\n\n'
        return _Reply(200, pre=[first], content=content,
                      post=self._chat_post(req, base, chunk, include_usage, usage, stop), chunk_delay=chunk_delay)

    def completions(self, req: _Request, data: dict, model: Any) -> _Reply:
        words, cached, chunk_delay = self._shape(req)
        prompt = max(_words_in(data.get("prompt")), 1)
        ident = f"cmpl-mock-{next(self.ids)}"
        created = int(time.time())
        usage = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words),
                 "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0}}
        base = {"id": ident, "object": "text_completion", "created": created, "model": model,
                "system_fingerprint": SYSTEM_FINGERPRINT}
        if not data.get("stream"):
            return _json_reply({**base, "choices": [
                {"text": "".join(words), "index": 0, "logprobs": None, "finish_reason": "stop"}], "usage": usage})
        options = data.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        if include_usage:
            base["usage"] = None

        def chunk(text: str, finish: str | None) -> bytes:
            return _data_event({**base, "choices": [
                {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]})

        post = [chunk("", "stop")]
        if include_usage:
            post.append(_data_event({**base, "choices": [], "usage": usage}))
        post.append("data: [DONE]\n\n")
        return _Reply(200, pre=[], content=[chunk(word, None) for word in words], post=post, chunk_delay=chunk_delay)

    def embeddings(self, req: _Request, data: dict, model: Any) -> _Reply:
        raw = data.get("input")
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            inputs = [raw]  # one text, or one text given as token ids
        elif isinstance(raw, list) and raw:
            inputs = raw
        else:
            raise _BadRequest("'input' must be a string or a non-empty array")
        dimensions = data.get("dimensions") or EMBEDDING_DIMENSIONS
        if not isinstance(dimensions, int) or not 0 < dimensions <= 4096:
            raise _BadRequest("'dimensions' must be a positive integer")
        as_base64 = data.get("encoding_format") == "base64"  # the openai SDK asks for base64 by default
        items = []
        for index, text in enumerate(inputs):
            vector = _embedding(text, dimensions)
            if as_base64:
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            items.append({"object": "embedding", "index": index, "embedding": vector})
        prompt = max(_words_in(inputs), 1)
        return _json_reply({"object": "list", "data": items, "model": model,
                            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})

    def responses(self, req: _Request, data: dict, model: Any) -> _Reply:
        words, cached, chunk_delay = self._shape(req)
        prompt = max(_message_words(data.get("input")), 1)
        n = next(self.ids)
        ident, item_id = f"resp_mock_{n}", f"msg_mock_{n}"
        text = "".join(words)
        usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                 "output_tokens": len(words), "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": prompt + len(words)}
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        tool = None
        if "tools" in data and not _ends_with_tool_result(data.get("input")):
            tool = _chosen_tool(data["tools"], data.get("tool_choice"), _responses_tool)
        if tool is not None:
            item_id = f"fc_mock_{n}"
            item = {"id": item_id, "type": "function_call", "status": "completed", "arguments": _dumps(tool[1]),
                    "call_id": f"call_mock_{n}", "name": tool[0]}
        response = {
            "id": ident, "object": "response", "created_at": int(time.time()), "status": "completed",
            "error": None, "incomplete_details": None, "instructions": data.get("instructions"),
            "max_output_tokens": data.get("max_output_tokens"), "model": model, "output": [item],
            "parallel_tool_calls": True, "previous_response_id": data.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None}, "store": data.get("store", True),
            "temperature": data.get("temperature", 1.0), "text": {"format": {"type": "text"}},
            "tool_choice": data.get("tool_choice", "auto"), "tools": data.get("tools") or [],
            "top_p": data.get("top_p", 1.0), "truncation": "disabled",
            "usage": usage, "user": None, "metadata": data.get("metadata") or {},
        }
        if not data.get("stream"):
            return _json_reply(response)
        seq = itertools.count()

        def event(kind: str, **fields: Any) -> bytes:
            return _named_event(kind, {"type": kind, "sequence_number": next(seq), **fields})

        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        if tool is not None:
            pre = [
                event("response.created", response=pending),
                event("response.in_progress", response=pending),
                event("response.output_item.added", output_index=0,
                      item={**item, "status": "in_progress", "arguments": ""}),
            ]
            where = {"item_id": item_id, "output_index": 0}
            content = [event("response.function_call_arguments.delta", **where, delta=piece)
                       for piece in _split(item["arguments"], len(words))]
            post = [
                event("response.function_call_arguments.done", **where, arguments=item["arguments"]),
                event("response.output_item.done", output_index=0, item=item),
                event("response.completed", response=response),
            ]
            return _Reply(200, pre=pre, content=content, post=post, chunk_delay=chunk_delay)
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        pre = [
            event("response.created", response=pending),
            event("response.in_progress", response=pending),
            event("response.output_item.added", output_index=0,
                  item={**item, "status": "in_progress", "content": []}),
            event("response.content_part.added", **where, part={**part, "text": ""}),
        ]
        content = [event("response.output_text.delta", **where, delta=word, logprobs=[]) for word in words]
        post = [
            event("response.output_text.done", **where, text=text, logprobs=[]),
            event("response.content_part.done", **where, part=part),
            event("response.output_item.done", output_index=0, item=item),
            event("response.completed", response=response),
        ]
        return _Reply(200, pre=pre, content=content, post=post, chunk_delay=chunk_delay)

    def models(self, req: _Request) -> _Reply:
        if "\r\nanthropic-version:" in req.low:
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2024-10-22T00:00:00Z"}
                    for m in MODELS]
            return _json_reply({"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
        return _json_reply({"object": "list", "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "mock"} for m in MODELS]})

    def model(self, req: _Request, name: str) -> _Reply:
        return _json_reply({"id": name, "object": "model", "created": 1700000000, "owned_by": "mock"})

    # -- Anthropic

    def messages(self, req: _Request, data: dict, model: Any) -> _Reply:
        words, cached, chunk_delay = self._shape(req)
        prompt = max(_message_words(data.get("messages")), 1)
        ident = f"msg_mock_{next(self.ids)}"
        if "tools" in data and not _ends_with_tool_result(data.get("messages")):
            tool = _chosen_tool(data["tools"], data.get("tool_choice"), _anthropic_tool)
            if tool is not None:
                return self._tool_use(data, model, ident, prompt, cached, tool, len(words), chunk_delay)
        if not data.get("stream"):
            usage = _anthropic_usage(prompt, len(words), cached)
            return _Reply(200, _MESSAGE % (ident, _quote(model), _quote("".join(words)), usage))
        # Like Anthropic: message_start carries the input usage and an output count so far of 1,
        # message_delta the cumulative output tokens.
        pre = [_MESSAGE_START % (ident, _quote(model), _anthropic_usage(prompt, 1, cached)), _BLOCK_START, _PING]
        post = [_BLOCK_STOP, _MESSAGE_DELTA % len(words), _MESSAGE_STOP]
        return _Reply(200, pre=pre, content=[_BLOCK_DELTA % _quote(word) for word in words], post=post,
                      chunk_delay=chunk_delay)

    def _tool_use(self, data: dict, model: Any, ident: str, prompt: int, cached: int, tool: tuple[str, dict],
                  fragments: int, chunk_delay: float) -> _Reply:
        name, arguments = tool
        block = {"type": "tool_use", "id": f"toolu_mock_{next(self.ids)}", "name": name, "input": arguments}
        if not data.get("stream"):
            return _Reply(200, '{"id":"%s","type":"message","role":"assistant","model":%s,"content":[%s],'
                               '"stop_reason":"tool_use","stop_sequence":null,"usage":%s}'
                          % (ident, _quote(model), _dumps(block), _anthropic_usage(prompt, fragments, cached)))
        start = {"type": "content_block_start", "index": 0, "content_block": {**block, "input": {}}}
        pre = [_MESSAGE_START % (ident, _quote(model), _anthropic_usage(prompt, 1, cached)),
               _named_event("content_block_start", start), _PING,
               _named_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                    "delta": {"type": "input_json_delta", "partial_json": ""}})]
        content = [_named_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                        "delta": {"type": "input_json_delta", "partial_json": piece}})
                   for piece in _split(_dumps(arguments), fragments)]
        stop = ('event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use",'
                '"stop_sequence":null},"usage":{"output_tokens":%d}}\n\n' % fragments)
        return _Reply(200, pre=pre, content=content, post=[_BLOCK_STOP, stop, _MESSAGE_STOP], chunk_delay=chunk_delay)

    def count_tokens(self, req: _Request, data: dict, model: Any) -> _Reply:
        return _json_reply({"input_tokens": max(_message_words(data.get("messages")), 1)})

    _POST_ROUTES = {
        "/v1/chat/completions": chat,
        "/v1/completions": completions,
        "/v1/embeddings": embeddings,
        "/v1/responses": responses,
        "/v1/messages": messages,
        "/v1/messages/count_tokens": count_tokens,
    }
    _AZURE_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})


# --------------------------------------------------------------------------- the protocol


class _Connection(asyncio.Protocol):
    """One client connection: parses HTTP/1.1 requests and writes replies.

    Requests are answered in order; while one is delayed or streaming
    (``busy``), later pipelined bytes wait in the buffer. Immediate replies are
    written straight from ``data_received`` -- no task, no coroutine -- which is
    what makes the common case fast.
    """

    __slots__ = ("app", "transport", "buf", "req", "busy", "closed", "hung", "keep_alive", "http11",
                 "timer", "task", "paused", "drain")

    def __init__(self, app: MockApp):
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.req: _Request | None = None
        self.busy = self.closed = self.hung = self.paused = False
        self.keep_alive = self.http11 = True
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task | None = None
        self.drain: asyncio.Future | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.app.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.hung:
            return
        self.buf += data
        if not self.busy:
            self._process()

    # -- parsing

    def _process(self) -> None:
        buf = self.buf
        while not self.busy and not self.closed:
            req = self.req
            if req is None:
                while buf[:2] == b"\r\n":  # stray CRLFs between requests are allowed
                    del buf[:2]
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        self._protocol_error(431, "request header too large")
                    return
                try:
                    req = _parse_head(bytes(buf[:end]))
                except ValueError as exc:
                    self._protocol_error(400, f"malformed request: {exc}")
                    return
                del buf[:end + 4]
                self.req = req
                self.keep_alive, self.http11 = req.keep_alive, req.http11
                if (req.chunked or len(buf) < req.length) and _header_value(req.low, "expect") == "100-continue":
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if req.chunked:
                try:
                    done = _dechunk(buf)
                except ValueError as exc:
                    self._protocol_error(400, f"malformed chunked body: {exc}")
                    return
                if done is None:
                    return
                req.body, used = done
                del buf[:used]
            elif req.length:
                if len(buf) < req.length:
                    return
                req.body = bytes(buf[:req.length])
                del buf[:req.length]
            self.req = None
            self._dispatch(req)

    def _protocol_error(self, status: int, message: str) -> None:
        body = _dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})
        self.transport.write((f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
                              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode())
        self._close()

    # -- answering

    def _dispatch(self, req: _Request) -> None:
        app = self.app
        if req.path.startswith("/__mock/"):
            self._send(app.inspect(req), False)
            return
        if req.body:
            try:
                req.json = json.loads(req.body)
            except ValueError:
                pass
        app.record(req)
        if not req.controls:  # the fast path: answer now, from here
            try:
                reply = app.reply(req, False)
            except _BadRequest as exc:
                reply = app.error(req, 400, str(exc))
            except Exception as exc:  # a bug here should read as a 500 in the test, not as a dropped connection
                reply = app.error(req, 500, f"mock provider bug: {exc!r}")
            self._send(reply, False)
            return
        headers = req.headers
        truncate = False
        delay = 0
        try:
            failing = app.should_fail(headers)
            fault = headers.get("x-mock-fault") if failing else None
            if fault is not None:
                fault = fault.strip().lower()
                if fault == "reset":
                    self._reset()
                    return
                if fault == "hang":
                    # Stay busy forever; the connection ends when the client gives up or the server stops.
                    self.busy = self.hung = True
                    self.buf.clear()
                    return
                if fault == "garbage":
                    self.transport.write(_GARBAGE)
                    self._close()
                    return
                if fault not in ("truncate", "no-final-event"):
                    raise _BadRequest(f"unknown X-Mock-Fault {fault!r} (reset, hang, garbage, truncate, "
                                      "no-final-event)")
                truncate = fault == "truncate"
            reply = app.reply(req, failing)
            delay = _int_header(headers, "x-mock-delay-ms", 0)
            if reply.pre is not None:
                reply.end_delay = _int_header(headers, "x-mock-end-delay-ms", 0) / 1000
                if fault == "no-final-event":
                    reply.post = reply.post[:-1]
        except _BadRequest as exc:
            reply = app.error(req, 400, str(exc))
        except Exception as exc:
            reply = app.error(req, 500, f"mock provider bug: {exc!r}")
        if delay:
            self.busy = True
            self.timer = asyncio.get_running_loop().call_later(delay / 1000, self._send_later, reply, truncate)
        else:
            self._send(reply, truncate)

    def _send_later(self, reply: _Reply, truncate: bool) -> None:
        self.timer = None
        if not self.closed and self._send(reply, truncate):
            self._resume()

    def _send(self, reply: _Reply, truncate: bool) -> bool:
        """Write a reply; True when it is complete, False when a task goes on streaming it."""
        keep_alive = self.keep_alive
        if reply.pre is None:
            if truncate:
                # Promise the whole body, send half of it, hang up.
                self.transport.write((reply.head(False, True) + reply.body[:len(reply.body) // 2]).encode())
                self._close()
                return True
            self.transport.write((reply.head(keep_alive, True) + reply.body).encode())
        else:
            if not self.http11:
                keep_alive = self.keep_alive = False  # no chunked encoding: the end of the body is the close
            if reply.chunk_delay > 0 or truncate or reply.end_delay > 0:
                self.busy = True
                self.task = asyncio.get_running_loop().create_task(self._stream(reply, truncate))
                return False
            # No pauses asked for: the whole stream in one write, one event per HTTP chunk.
            frame = _frame if self.http11 else _raw
            out = [reply.head(keep_alive, self.http11)]
            out += map(frame, reply.pre)
            out += map(frame, reply.content)
            out += map(frame, reply.post)
            if self.http11:
                out.append("0\r\n\r\n")
            self.transport.write("".join(out).encode())
        if not keep_alive:
            self._close()
        return True

    async def _stream(self, reply: _Reply, truncate: bool) -> None:
        """Stream with pauses between content chunks or before the end of the body, or cut it in
        half for the truncate fault."""
        try:
            frame = _frame if self.http11 else _raw
            content = reply.content
            if truncate:
                content = content[:len(content) // 2]
            first = "".join(map(frame, reply.pre)) + (frame(content[0]) if content else "")
            self.transport.write((reply.head(self.keep_alive and not truncate, self.http11) + first).encode())
            for event in itertools.islice(content, 1, None):
                if reply.chunk_delay > 0:
                    await asyncio.sleep(reply.chunk_delay)
                if self.closed:
                    return
                if self.paused:  # the client reads slower than we write: wait instead of buffering
                    self.drain = asyncio.get_running_loop().create_future()
                    await self.drain
                    if self.closed:
                        return
                self.transport.write(frame(event).encode())
            if truncate:
                self._close()  # no last events, no terminating chunk: the body just stops
                return
            if reply.chunk_delay > 0:
                await asyncio.sleep(reply.chunk_delay)
                if self.closed:
                    return
            end = "0\r\n\r\n" if self.http11 else ""
            if reply.end_delay > 0:
                # Real servers end the body a little after the last event: a client that stops
                # reading at the final event hangs up in between.
                self.transport.write("".join(map(frame, reply.post)).encode())
                await asyncio.sleep(reply.end_delay)
                if self.closed:
                    return
                self.transport.write(end.encode())
            else:
                self.transport.write(("".join(map(frame, reply.post)) + end).encode())
            self.task = None
            if not self.keep_alive:
                self._close()
                return
            self._resume()
        except asyncio.CancelledError:
            pass

    def _resume(self) -> None:
        self.busy = False
        if self.buf and not self.closed:
            self._process()

    def _close(self) -> None:
        self.closed = True
        self.transport.close()  # flushes what was written, then FIN

    def _reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN, like a crashed peer."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        self.closed = True
        self.transport.abort()


# --------------------------------------------------------------------------- running it


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # optional: faster when installed, never required
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def serve(app: MockApp, host: str = "127.0.0.1", port: int = 0, reuse_port: bool = False,
                ssl_context: ssl.SSLContext | None = None) -> asyncio.AbstractServer:
    """Start serving ``app`` on the running loop (HTTPS with ``ssl_context``); the bound port is
    ``server.sockets[0].getsockname()[1]``."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Connection(app), host, port, backlog=2048,
                                    reuse_port=reuse_port or None, ssl=ssl_context)


def _url(host: str, port: int, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class MockProvider:
    """The mock on a background thread with its own event loop, for tests.

    ``MockProvider().start()`` binds a free port (or ``port``); ``url`` is its
    base URL. Usable as a context manager.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, history: int = HISTORY,
                 ssl_context: ssl.SSLContext | None = None):
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.app = MockApp(history)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return _url(self.host, self.port, self.ssl_context is not None)

    def start(self) -> MockProvider:
        if self._thread is not None:
            return self
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mock-provider", daemon=True)
        self._thread.start()
        try:
            self._server = asyncio.run_coroutine_threadsafe(
                serve(self.app, self.host, self.port, ssl_context=self.ssl_context), self._loop).result(timeout=10)
        except BaseException:
            self.stop()  # e.g. the port is taken: leave no thread behind
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def requests(self) -> list[dict]:
        """The recorded requests, oldest first: method, path (with query), headers, body, json, time."""
        return self.app.requests()

    def reset(self) -> None:
        """Forget recorded requests and X-Mock-Fail-Times counters."""
        self.app.reset()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            self.app.close_connections()  # including hung ones, which would never end by themselves
            await asyncio.sleep(0)  # let connection_lost run and cancel the streaming tasks
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self._thread = self._loop = self._server = None

    def __enter__(self) -> MockProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mock_provider", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument("--reuse-port", action="store_true",
                        help="SO_REUSEPORT, to run several processes on one port (each keeps its own record)")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM), when not in --certfile")
    args = parser.parse_args(argv)

    context = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    app = MockApp()
    server = loop.run_until_complete(serve(app, args.host, args.port, args.reuse_port, context))
    port = server.sockets[0].getsockname()[1]
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loop.stop)
    print(f"listening on {_url(args.host, port, context is not None)}", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()
        app.close_connections()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
