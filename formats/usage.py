"""Reading token usage from provider responses, plain and streamed.

`StreamTee` sits between the upstream SSE stream and the client: it passes
bytes through as they arrive and, on the side, assembles the response the
provider's non-streamed API would have returned (OpenAI chat and completions
with whole `tool_calls`, Anthropic messages with parsed tool `input`, the
Responses API's final `response`) and its usage. When the gateway itself asked
for a usage chunk, the tee removes that chunk, whatever its shape, so the
client sees exactly the stream it asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# Keep at most this much of a stream's raw text for streams we cannot rebuild.
MAX_RAW_STREAM = 1024 * 1024


@dataclass(slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_from_body(body: Any) -> Usage:
    """Usage of a complete (non-streamed or rebuilt) response body of any known shape."""
    if not isinstance(body, dict):
        return Usage()
    usage = body.get("usage")
    if body.get("type") == "response.completed" and isinstance(body.get("response"), dict):
        usage = body["response"].get("usage")
    if not isinstance(usage, dict):
        return Usage()
    if "prompt_tokens" in usage:  # OpenAI chat, completions, embeddings
        details = usage.get("prompt_tokens_details") or {}
        completion = _int(usage.get("completion_tokens"))
        if completion is None and "total_tokens" in usage:
            completion = 0  # embeddings report no completion
        return Usage(_int(usage.get("prompt_tokens")), completion, _int(details.get("cached_tokens")))
    if "input_tokens" in usage:
        if body.get("type") == "message" or "cache_read_input_tokens" in usage:
            # Anthropic: input_tokens excludes cache reads and writes.
            read = _int(usage.get("cache_read_input_tokens")) or 0
            write = _int(usage.get("cache_creation_input_tokens")) or 0
            base = _int(usage.get("input_tokens"))
            prompt = None if base is None else base + read + write
            return Usage(prompt, _int(usage.get("output_tokens")), read or None, write or None)
        details = usage.get("input_tokens_details") or {}  # OpenAI Responses API
        return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")),
                     _int(details.get("cached_tokens")))
    return Usage()


# Responses API events that end a stream, each carrying the final `response` object.
_RESPONSES_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_EMPTY = (None, "", [], {})


def _usage_only(choices: Any) -> bool:
    """True when a chunk's choices carry nothing for the client: `[]`, or choices with an empty
    delta and no finish reason (LiteLLM sends its usage chunk as `[{"index": 0, "delta": {}}]`)."""
    if not isinstance(choices, list):
        return choices is None
    for choice in choices:
        if not isinstance(choice, dict):
            return False
        if choice.get("finish_reason") or choice.get("text") or choice.get("logprobs"):
            return False
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(value not in _EMPTY for value in delta.values()):
            return False
    return True


class StreamTee:
    """Parses a server-sent event stream on the side while it is forwarded."""

    def __init__(self, strip_usage_chunk: bool = False):
        self.strip_usage_chunk = strip_usage_chunk
        self.buffer = b""
        self.usage = Usage()
        self.model = ""
        self.chunks = 0
        self.raw_size = 0
        self.raw: list[bytes] = []
        # OpenAI chat / completions assembly
        self._openai: dict[str, Any] | None = None
        self._choices: dict[int, dict[str, Any]] = {}
        # Anthropic assembly: the message, its content blocks, and tool input JSON not yet parsed
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._partial_json: dict[int, list[str]] = {}
        # Responses API: the `response` of its final event
        self._final: dict[str, Any] | None = None
        self._responses = False
        self.saw_end = False  # the stream's final event ([DONE], message_stop, response.completed) was parsed
        self.error = ""  # the message of an error event in the stream

    @property
    def recognized(self) -> bool:
        """Whether the stream is one of the known formats (and so has a known final event)."""
        return self._openai is not None or self._message is not None or self._responses

    def feed(self, chunk: bytes) -> bytes:
        """Take bytes from upstream; return the bytes to send to the client now."""
        self.chunks += 1
        if self.raw_size < MAX_RAW_STREAM:
            self.raw.append(chunk)
            self.raw_size += len(chunk)
        self.buffer += chunk
        if not self.strip_usage_chunk:
            self._drain_events()
            return chunk
        return self._drain_events(keep=True)

    def finish(self) -> bytes:
        """End of the upstream stream: what is left over for the client."""
        rest, self.buffer = self.buffer, b""
        if not rest.strip():
            return rest if self.strip_usage_chunk else b""
        out = self._parse_event(rest)
        return out if self.strip_usage_chunk else b""

    def _drain_events(self, keep: bool = False) -> bytes:
        out: list[bytes] = []
        buffer = self.buffer
        while True:
            end = buffer.find(b"\n\n")
            sep = 2
            crlf = buffer.find(b"\r\n\r\n")
            if crlf != -1 and (end == -1 or crlf < end):
                end, sep = crlf, 4
            if end == -1:
                break
            event = buffer[: end + sep]
            buffer = buffer[end + sep :]
            forwarded = self._parse_event(event)
            if keep and forwarded:
                out.append(forwarded)
        self.buffer = buffer
        return b"".join(out)

    def _parse_event(self, event: bytes) -> bytes:
        """Parse one event; return what the client gets of it (b"" for the usage chunk to drop)."""
        data_lines = []
        for line in event.splitlines():
            if line.startswith(b"data:"):
                data_lines.append(line[5:].strip())
        if not data_lines:
            return event
        data = b"\n".join(data_lines)
        if data == b"[DONE]":
            self.saw_end = True
            return event
        try:
            payload = orjson.loads(data)
        except ValueError:
            return event
        if not isinstance(payload, dict):
            return event
        if "choices" in payload:
            return self._openai_chunk(payload, event)
        kind = payload.get("type")
        if isinstance(kind, str):
            self._anthropic_or_responses_event(kind, payload)
        elif isinstance(payload.get("error"), dict):  # an OpenAI-style error in the middle of a stream
            self.error = str(payload["error"].get("message") or payload["error"])
        return event

    def _openai_chunk(self, payload: dict[str, Any], event: bytes) -> bytes:
        if self._openai is None:
            self._openai = {k: payload.get(k) for k in ("id", "object", "created", "model", "system_fingerprint")}
        if payload.get("model"):
            self.model = payload["model"]
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.usage = usage_from_body({"usage": usage})
            self._openai["usage"] = usage
        choices = payload.get("choices")
        for choice in choices or ():
            if isinstance(choice, dict):
                self._openai_choice(choice)
        if not (self.strip_usage_chunk and isinstance(usage, dict)):
            return event
        if _usage_only(choices):
            return b""
        # Usage riding on a chunk with content: the client gets the chunk without it.
        return b"data: " + orjson.dumps({k: v for k, v in payload.items() if k != "usage"}) + b"\n\n"

    def _openai_choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        slot = self._choices.get(index)
        if slot is None:
            slot = self._choices[index] = {"index": index, "content": [], "finish_reason": None}
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if delta.get("role"):
                slot["role"] = delta["role"]
            if isinstance(delta.get("content"), str):
                slot["content"].append(delta["content"])
            for name in ("refusal", "reasoning_content"):
                if isinstance(delta.get(name), str):
                    slot.setdefault(name, []).append(delta[name])
            if isinstance(delta.get("tool_calls"), list):
                calls = slot.setdefault("tool_calls", {})
                for fragment in delta["tool_calls"]:
                    if isinstance(fragment, dict):
                        _add_call_fragment(calls, fragment)
            if isinstance(delta.get("function_call"), dict):  # the legacy single function call
                _add_function_fragment(slot.setdefault("function_call", {"name": "", "arguments": []}),
                                       delta["function_call"])
        elif isinstance(choice.get("text"), str):  # legacy completions
            slot["text"] = True
            slot["content"].append(choice["text"])
        if choice.get("finish_reason"):
            slot["finish_reason"] = choice["finish_reason"]

    def _anthropic_or_responses_event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "content_block_delta":  # the most frequent event first
            index = payload.get("index", 0)
            block = self._blocks.get(index)
            if block is None:
                block = self._blocks[index] = {"type": "text", "text": ""}
            delta = payload.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif delta_type == "input_json_delta":
                self._partial_json.setdefault(index, []).append(delta.get("partial_json", ""))
            elif delta_type == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            elif delta_type == "signature_delta":
                block["signature"] = delta.get("signature", "")
            elif delta_type == "citations_delta":
                block.setdefault("citations", []).append(delta.get("citation"))
        elif kind == "message_start" and isinstance(payload.get("message"), dict):
            self._message = dict(payload["message"])
            self.model = self._message.get("model") or self.model
            self.usage = usage_from_body({"type": "message", "usage": self._message.get("usage") or {}})
        elif kind == "content_block_start":
            self._blocks[payload.get("index", 0)] = dict(payload.get("content_block") or {})
        elif kind == "content_block_stop":
            self._parse_input(payload.get("index", 0))
        elif kind == "message_delta":
            if self._message is not None:
                self._message.update(payload.get("delta") or {})
                usage = dict(self._message.get("usage") or {})
                usage.update(payload.get("usage") or {})
                self._message["usage"] = usage
                self.usage = usage_from_body({"type": "message", "usage": usage})
        elif kind == "message_stop":
            self.saw_end = True
        elif kind in _RESPONSES_FINAL and isinstance(payload.get("response"), dict):
            self._responses = True
            self._final = payload["response"]
            self.model = self._final.get("model") or self.model
            self.usage = usage_from_body({"type": "response.completed", "response": self._final})
            if kind == "response.failed":
                error = self._final.get("error")
                self.error = str(error.get("message") if isinstance(error, dict) else error or "response failed")
            self.saw_end = True
        elif kind.startswith("response."):
            self._responses = True
            response = payload.get("response")
            if kind == "response.created" and isinstance(response, dict) and response.get("model"):
                self.model = response["model"]
        elif kind == "error":  # Anthropic's and the Responses API's error event
            error = payload.get("error")
            self.error = str((error.get("message") if isinstance(error, dict) else None)
                             or payload.get("message") or error or "error event")

    def _parse_input(self, index: int) -> None:
        """A tool_use block's input, parsed from its JSON fragments as the non-streamed API gives it."""
        parts = self._partial_json.pop(index, None)
        block = self._blocks.get(index)
        if not parts or block is None:
            return
        text = "".join(parts)
        if not text.strip():
            return
        try:
            block["input"] = orjson.loads(text)
        except ValueError:
            block["input"] = text  # cut off mid-way: the text as it came, rather than nothing

    def response_body(self) -> Any:
        """The response assembled as the non-streamed API returns it (or the raw text)."""
        if self._openai is not None:
            return self._openai_body()
        if self._message is not None:
            for index in list(self._partial_json):
                self._parse_input(index)
            body = dict(self._message)
            body["content"] = [self._blocks[i] for i in sorted(self._blocks)]
            return body
        if self._final is not None:
            return self._final
        return b"".join(self.raw).decode("utf-8", "replace")

    def _openai_body(self) -> dict[str, Any]:
        body = dict(self._openai)
        kind = body.get("object")
        body["object"] = "chat.completion" if kind == "chat.completion.chunk" else kind
        choices = []
        for index in sorted(self._choices):
            slot = self._choices[index]
            text = "".join(slot["content"])
            if slot.get("text") or kind == "text_completion":
                choices.append({"text": text, "index": index, "logprobs": None, "finish_reason": slot["finish_reason"]})
                continue
            calls = slot.get("tool_calls")
            function_call = slot.get("function_call")
            message: dict[str, Any] = {"role": slot.get("role", "assistant"),
                                       "content": text if text or not (calls or function_call) else None}
            for name in ("refusal", "reasoning_content"):
                if name in slot:
                    message[name] = "".join(slot[name])
            if calls:
                message["tool_calls"] = [
                    {"id": call["id"], "type": call["type"],
                     "function": {"name": call["name"], "arguments": "".join(call["arguments"])}}
                    for _index, call in sorted(calls.items())
                ]
            if function_call:
                message["function_call"] = {"name": function_call["name"],
                                            "arguments": "".join(function_call["arguments"])}
            choices.append({"index": index, "message": message, "finish_reason": slot["finish_reason"]})
        body["choices"] = choices
        return body


def _add_call_fragment(calls: dict[int, dict[str, Any]], fragment: dict[str, Any]) -> None:
    """One `tool_calls` delta: the first fragment of a call has its id and name, later ones
    continue its `arguments` string."""
    index = fragment.get("index")
    if not isinstance(index, int):
        index = len(calls)
    call = calls.get(index)
    if call is None:
        call = calls[index] = {"id": None, "type": "function", "name": "", "arguments": []}
    if fragment.get("id"):
        call["id"] = fragment["id"]
    if fragment.get("type"):
        call["type"] = fragment["type"]
    if isinstance(fragment.get("function"), dict):
        _add_function_fragment(call, fragment["function"])


def _add_function_fragment(call: dict[str, Any], function: dict[str, Any]) -> None:
    name = function.get("name")
    if isinstance(name, str) and name and name != call["name"]:
        call["name"] += name  # the name comes once; some servers repeat it whole, which is kept once
    if isinstance(function.get("arguments"), str):
        call["arguments"].append(function["arguments"])
