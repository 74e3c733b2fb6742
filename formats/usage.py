"""Reading token usage from provider responses, plain and streamed.

`StreamTee` sits between the upstream SSE stream and the client: it passes
bytes through as they arrive and, on the side, reconstructs the response and its
usage. When the gateway itself asked OpenAI for a usage chunk, the tee removes
that chunk so the client sees exactly the stream it asked for.
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
        return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")), _int(details.get("cached_tokens")))
    return Usage()


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
        # OpenAI chat / completions rebuild
        self._openai: dict[str, Any] | None = None
        self._choices: dict[int, dict[str, Any]] = {}
        # Anthropic rebuild
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._final: dict[str, Any] | None = None
        self.saw_end = False

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
        if rest.strip():
            self._parse_event(rest)
        return rest if self.strip_usage_chunk else b""

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
            dropped = self._parse_event(event)
            if keep and not dropped:
                out.append(event)
        self.buffer = buffer
        return b"".join(out)

    def _parse_event(self, event: bytes) -> bool:
        """Parse one event; True when it is the injected usage chunk to drop."""
        data_lines = []
        for line in event.splitlines():
            if line.startswith(b"data:"):
                data_lines.append(line[5:].strip())
        if not data_lines:
            return False
        data = b"\n".join(data_lines)
        if data == b"[DONE]":
            self.saw_end = True
            return False
        try:
            payload = orjson.loads(data)
        except ValueError:
            return False
        if not isinstance(payload, dict):
            return False
        if "choices" in payload:
            return self._openai_chunk(payload)
        kind = payload.get("type")
        if isinstance(kind, str):
            self._anthropic_or_responses_event(kind, payload)
        return False

    def _openai_chunk(self, payload: dict[str, Any]) -> bool:
        if self._openai is None:
            self._openai = {k: payload.get(k) for k in ("id", "object", "created", "model", "system_fingerprint")}
        if payload.get("model"):
            self.model = payload["model"]
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.usage = usage_from_body({"usage": usage})
            self._openai["usage"] = usage
        for choice in payload.get("choices") or ():
            index = choice.get("index", 0)
            slot = self._choices.setdefault(index, {"index": index, "content": [], "finish_reason": None})
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if delta.get("role"):
                    slot["role"] = delta["role"]
                if isinstance(delta.get("content"), str):
                    slot["content"].append(delta["content"])
                if delta.get("tool_calls"):
                    slot.setdefault("tool_calls", []).extend(delta["tool_calls"])
            elif isinstance(choice.get("text"), str):  # legacy completions
                slot["content"].append(choice["text"])
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]
        return bool(self.strip_usage_chunk and usage and not payload.get("choices"))

    def _anthropic_or_responses_event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "message_start" and isinstance(payload.get("message"), dict):
            self._message = dict(payload["message"])
            self.model = self._message.get("model") or self.model
            self.usage = usage_from_body({"type": "message", "usage": self._message.get("usage") or {}})
        elif kind == "content_block_start":
            self._blocks[payload.get("index", 0)] = dict(payload.get("content_block") or {})
        elif kind == "content_block_delta":
            block = self._blocks.setdefault(payload.get("index", 0), {"type": "text", "text": ""})
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif delta.get("type") == "input_json_delta":
                block["partial_json"] = block.get("partial_json", "") + delta.get("partial_json", "")
        elif kind == "message_delta":
            if self._message is not None:
                self._message.update(payload.get("delta") or {})
                usage = dict(self._message.get("usage") or {})
                usage.update(payload.get("usage") or {})
                self._message["usage"] = usage
                self.usage = usage_from_body({"type": "message", "usage": usage})
        elif kind == "message_stop":
            self.saw_end = True
        elif kind == "response.completed" and isinstance(payload.get("response"), dict):
            self._final = payload["response"]
            self.model = self._final.get("model") or self.model
            self.usage = usage_from_body(payload)
            self.saw_end = True

    def response_body(self) -> Any:
        """The response rebuilt as if it had not been streamed (or the raw text)."""
        if self._openai is not None:
            body = dict(self._openai)
            body["object"] = "chat.completion" if body.get("object") == "chat.completion.chunk" else body.get("object")
            choices = []
            for index in sorted(self._choices):
                slot = self._choices[index]
                message: dict[str, Any] = {"role": slot.get("role", "assistant"), "content": "".join(slot["content"])}
                if slot.get("tool_calls"):
                    message["tool_calls"] = slot["tool_calls"]
                choices.append({"index": index, "message": message, "finish_reason": slot["finish_reason"]})
            body["choices"] = choices
            return body
        if self._message is not None:
            body = dict(self._message)
            body["content"] = [self._blocks[i] for i in sorted(self._blocks)]
            return body
        if self._final is not None:
            return self._final
        return b"".join(self.raw).decode("utf-8", "replace")
