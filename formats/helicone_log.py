"""Helicone's async log body: `{"providerRequest", "providerResponse", "timing"}`, as its helper
libraries (`helicone-helpers`, `@helicone/helpers`) and its logging endpoints take it.

One parser for every door that takes this body (`/custom/v1/log` and its siblings,
`POST /api/v1/log`), producing the log record the proxy produces (gateway/proxy.py `_record`).
Pure: no Django, no database. A body we refuse raises `LogBodyError` naming the field.

- `providerRequest`: `url` (text; `custom-model-nopath` from the Python helper), `json` (the request
  body) and `meta` (`Helicone-*` headers as an object).
- `providerResponse`: `json`, or `textBody` (which wins when present: a whole JSON document, a raw
  SSE stream, or JSON chunks one per line, as the helpers' log builder joins them; streams are
  assembled into the non-streamed response as a proxied stream is), `status`, `headers`, `cost`
  (USD; priced from the tokens when absent).
- `timing` (optional: the call is then logged at the time it arrives, with no latency):
  `startTime` and `endTime` as `{seconds, milliseconds}`, epoch seconds or milliseconds (numbers or
  strings of them) or ISO 8601; `timeToFirstToken` in milliseconds.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping
from urllib.parse import urlsplit

import orjson

from .headers import HeaderError, parse_options
from .ids import log_id
from .providers import provider_from_host
from .usage import StreamTee, Usage, usage_from_body

# The first path segment of Helicone's logging routes -> our provider name.
PATH_PROVIDERS = {"custom": "custom", "oai": "openai", "anthropic": "anthropic", "googleapis": "gemini"}

# Our provider names -> Helicone's (its `Provider` enum: what its API answers and filters on).
HELICONE_PROVIDERS = {
    "openai": "OPENAI", "azure": "AZURE", "anthropic": "ANTHROPIC", "together": "TOGETHER", "groq": "GROQ",
    "mistral": "MISTRAL", "deepseek": "DEEPSEEK", "openrouter": "OPENROUTER", "fireworks": "FIREWORKS",
    "xai": "X", "gemini": "GOOGLE", "custom": "CUSTOM",
}
OUR_PROVIDERS = {theirs: ours for ours, theirs in HELICONE_PROVIDERS.items()}


def helicone_provider(ours: str) -> str:
    return HELICONE_PROVIDERS.get(ours, ours.upper())


def our_provider(name: str) -> str:
    """A provider named either way (`OPENAI`, `openai`) as we store it."""
    return OUR_PROVIDERS.get(name, OUR_PROVIDERS.get(name.upper(), name.lower()))


# The headers that describe a logged call. The others (cache, rate limits, retries, fallbacks,
# upstream targets) act on a call being proxied and mean nothing for one already made: ignored.
LOG_HEADERS = frozenset({
    "helicone-request-id", "helicone-user-id", "helicone-session-id", "helicone-session-path",
    "helicone-session-name", "helicone-request-name", "helicone-model-override", "helicone-omit-request",
    "helicone-omit-response", "helicone-prompt-id", "helicone-prompt-version",
})
_PROPERTY = "helicone-property-"

MAX_ERROR = 5000
# Epoch values above this are milliseconds (1e11 seconds is the year 5138).
_MILLISECONDS_ABOVE = 1e11
# `_type` and `toolName` set to "unknown" are the Python helper's filler in every response it logs,
# not part of the provider's answer.
_FILLER = {"_type": "unknown", "toolName": "unknown"}
# Anthropic's stream events (a whole response is `{"type": "message", …}`).
_STREAM_EVENTS = frozenset({"message_start", "content_block_start", "content_block_delta", "content_block_stop",
                            "message_delta", "message_stop", "ping"})


class LogBodyError(ValueError):
    """A log body we refuse; `field` names where (`providerResponse.status`, `timing.startTime`…)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_log(body: Any, *, headers: Mapping[str, str] | None = None, provider: str | None = None,
              now: float, max_body_chars: int) -> dict[str, Any]:
    """The log record (without org and key) of one Helicone log body.

    `headers` are the lower-cased HTTP headers of the log call: their `Helicone-*` values win over
    the body's `meta`. `provider` comes from the route (`PATH_PROVIDERS`); without it, from the
    host of `providerRequest.url`.
    """
    if not isinstance(body, dict):
        raise LogBodyError("body", "must be a JSON object with providerRequest and providerResponse")
    request = _object(body, "providerRequest")
    response = _object(body, "providerResponse")
    url = request.get("url", "")
    if not isinstance(url, str):
        raise LogBodyError("providerRequest.url", "must be a string")
    if "json" not in request:
        raise LogBodyError("providerRequest.json", "is required (the request body sent to the provider)")
    request_json = request["json"]
    opts = _options(request.get("meta"), headers or {})
    status = _status(response.get("status"))
    start, end, ttft = _timing(body.get("timing"), now)

    answer = _response(response, provider)
    response_body = answer.body
    usage = answer.usage
    requested_model = request_json.get("model") if isinstance(request_json, dict) else None
    requested_model = requested_model if isinstance(requested_model, str) else ""
    served_model = answer.model or (_model_of(response_body) if isinstance(response_body, dict) else "")
    error = answer.error
    if status >= 400 or status < 200:
        error = _as_text(response_body)[:MAX_ERROR] if response_body not in (None, "", {}) else f"HTTP {status}"
    streamed = answer.streamed or (isinstance(request_json, dict) and request_json.get("stream") is True)

    record: dict[str, Any] = {
        "id": opts.request_id or log_id(),
        "created_at": start,
        "source": "log",
        "provider": (provider or (provider_from_host(url) if url else "custom"))[:32],
        "method": "POST",
        "target_url": url,
        "path": urlsplit(url).path if "://" in url else url,
        "requested_model": requested_model[:200],
        "model": (opts.model_override or served_model or requested_model)[:200],
        "status": status,
        "error": error[:MAX_ERROR],
        "streamed": streamed,
        "request_body": "" if opts.omit_request else _limited(_as_text(request_json), max_body_chars),
        "response_body": "" if opts.omit_response else _limited(_as_text(response_body), max_body_chars),
        "request_omitted": opts.omit_request,
        "response_omitted": opts.omit_response,
        "latency_ms": None if end is None else round((end - start) * 1000, 3),
        "ttft_ms": ttft,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "user_id": opts.user_id or _user_of(request_json),
        "session_id": opts.session_id,
        "session_path": opts.session_path,
        "session_name": opts.session_name,
        "properties": opts.properties,
        "request_name": opts.request_name,
        "prompt_id": opts.prompt_id,
        "prompt_version": opts.prompt_version,
    }
    cost = _cost(response.get("cost"))
    if cost is not None:
        record["cost_usd"] = cost
    return record


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if not isinstance(value, dict):
        raise LogBodyError(name, "is required and must be an object")
    return value


# --- Helicone-* headers ----------------------------------------------------------------------


def _header_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode() if isinstance(value, (dict, list)) \
        else str(value).lower() if isinstance(value, bool) else str(value)
    # parse_options reads values as HTTP delivers them (UTF-8 bytes decoded as latin-1).
    return text.encode("utf-8").decode("latin-1")


def _options(meta: Any, headers: Mapping[str, str]):
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise LogBodyError("providerRequest.meta", "must be an object of Helicone-* headers")
    merged: dict[str, str] = {}
    from_http: set[str] = set()
    for name, value in meta.items():
        lowered = str(name).lower()
        if value is not None and (lowered in LOG_HEADERS or lowered.startswith(_PROPERTY)):
            merged[lowered] = _header_value(value)
    for name, value in headers.items():
        if name in LOG_HEADERS or name.startswith(_PROPERTY):
            merged[name] = value
            from_http.add(name)
    try:
        return parse_options(merged)
    except HeaderError as exc:
        lowered = exc.header.lower()
        where = "header of the log call" if lowered in from_http else "in providerRequest.meta"
        raise LogBodyError(exc.header, f"{exc.message} ({where})") from None


# --- Status, timing, cost ----------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite number from a JSON number or a string holding one; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _status(value: Any) -> int:
    number = _number(value) if not isinstance(value, str) else None
    if number is None or number != int(number) or not -(2**31) <= number < 2**31:
        raise LogBodyError("providerResponse.status", "must be an integer (the provider's HTTP status)")
    return int(number)


def epoch_seconds(value: Any, field: str) -> float:
    """Helicone's `{seconds, milliseconds}`, epoch seconds or milliseconds (numbers or strings of
    them), or an ISO 8601 timestamp, as epoch seconds."""
    if isinstance(value, dict):
        seconds = _number(value.get("seconds"))
        milliseconds = _number(value.get("milliseconds", 0) or 0)
        if seconds is None or milliseconds is None:
            raise LogBodyError(field, "expected {seconds, milliseconds} with numbers")
        moment = seconds + milliseconds / 1000
    else:
        moment = _number(value)
        if moment is not None:
            moment = moment / 1000 if moment > _MILLISECONDS_ABOVE else moment
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
            except (ValueError, OverflowError):
                pass
        if moment is None:
            raise LogBodyError(field, "expected {seconds, milliseconds}, epoch seconds or milliseconds, or ISO 8601")
    if moment < 0 or moment > 253402300799:  # year 9999, the last a timestamp column holds
        raise LogBodyError(field, "is out of range")
    return moment


def _timing(timing: Any, now: float) -> tuple[float, float | None, float | None]:
    """(start, end, time to first token in ms); without timing the call is logged now, unmeasured."""
    if timing is None:
        return now, None, None
    if not isinstance(timing, dict):
        raise LogBodyError("timing", "must be an object with startTime and endTime")
    for name in ("startTime", "endTime"):
        if timing.get(name) is None:
            raise LogBodyError(f"timing.{name}", "is required when timing is given")
    start = epoch_seconds(timing["startTime"], "timing.startTime")
    end = epoch_seconds(timing["endTime"], "timing.endTime")
    if end < start:
        raise LogBodyError("timing.endTime", "is before timing.startTime")
    ttft = timing.get("timeToFirstToken")
    if ttft is not None:
        ttft = _number(ttft)
        if ttft is None or ttft < 0:
            raise LogBodyError("timing.timeToFirstToken", "must be a number of milliseconds")
        ttft = round(ttft, 3)
    return start, end, ttft


def _cost(value: Any) -> str | None:
    """`providerResponse.cost` in USD, as decimal text (the record is JSON on its way to the writer)."""
    if value is None:
        return None
    number = _number(value) if not isinstance(value, str) else None
    if number is None or number < 0 or number >= 1e10:
        raise LogBodyError("providerResponse.cost", "must be a non-negative number of US dollars")
    try:
        return format(Decimal(repr(number)).quantize(Decimal("0.0000000001")), "f")
    except InvalidOperation:
        raise LogBodyError("providerResponse.cost", "must be a non-negative number of US dollars") from None


# --- The response: JSON, or text that may be a stream -------------------------------------------


class _Answer:
    __slots__ = ("body", "usage", "model", "streamed", "error")

    def __init__(self, body: Any, usage: Usage, model: str = "", streamed: bool = False, error: str = ""):
        self.body, self.usage, self.model, self.streamed, self.error = body, usage, model, streamed, error


def _response(response: dict[str, Any], provider: str | None) -> _Answer:
    text = response.get("textBody")
    if text is not None and not isinstance(text, str):
        raise LogBodyError("providerResponse.textBody", "must be a string")
    if text:
        return _text_answer(text)
    if "json" not in response:
        raise LogBodyError("providerResponse", "json or textBody is required")
    body = response["json"]
    if isinstance(body, dict):
        if isinstance(body.get("streamed_data"), list):  # Helicone's other way to log a stream
            return _chunks_answer([chunk for chunk in body["streamed_data"] if isinstance(chunk, dict)], "")
        if all(body.get(key) == value for key, value in _FILLER.items()):
            body = {key: value for key, value in body.items() if key not in _FILLER}
    elif isinstance(body, list) and body and all(isinstance(chunk, dict) for chunk in body):
        return _chunks_answer(body, "")  # Google's streamGenerateContent answers a JSON array of chunks
    return _Answer(body, _usage(body))


def _text_answer(text: str) -> _Answer:
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            whole = orjson.loads(stripped)
        except ValueError:
            pass
        else:
            if isinstance(whole, list) and whole and all(isinstance(chunk, dict) for chunk in whole):
                return _chunks_answer(whole, "")
            if isinstance(whole, dict) and _is_chunk(whole):  # a stream of one chunk
                return _chunks_answer([whole], "", text)
            return _Answer(whole, _usage(whole))
    lines = text.splitlines()
    if any(line.startswith(("data:", "event:")) for line in lines):
        tee = StreamTee()
        tee.feed(text.encode() + b"\n\n")
        tee.finish()
        return _tee_answer(tee, text, "")
    chunks, other = [], []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            chunk = orjson.loads(line) if line[:1] == "{" else None
        except ValueError:
            chunk = None
        if isinstance(chunk, dict):
            chunks.append(chunk)
        else:
            other.append(line)
    if not chunks:
        return _Answer(text, Usage())
    # Text beside the chunks is what the helpers' log builder puts before them: the error it was given.
    return _chunks_answer(chunks, "\n".join(other), text)


def _is_chunk(payload: dict[str, Any]) -> bool:
    kind = payload.get("type")
    return payload.get("object") in ("chat.completion.chunk", "text_completion.chunk") or (
        isinstance(kind, str) and (kind in _STREAM_EVENTS or kind.startswith("response.")))


def _chunks_answer(chunks: list[dict[str, Any]], error: str, raw: str | None = None) -> _Answer:
    if any("candidates" in chunk or "usageMetadata" in chunk for chunk in chunks):
        return _google_stream(chunks, error)
    tee = StreamTee()
    for chunk in chunks:
        tee.feed(b"data: " + orjson.dumps(_without_null_usage(chunk)) + b"\n\n")
    return _tee_answer(tee, raw if raw is not None else orjson.dumps(chunks).decode(), error)


def _without_null_usage(chunk: dict[str, Any]) -> dict[str, Any]:
    """An SDK's chunk object dumped whole (`event.model_dump()`) names every usage field, unset ones as
    null: Anthropic's `message_delta` then carries `"input_tokens": null`, which is not a count."""
    for holder in (chunk, chunk.get("message")):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            holder["usage"] = {name: value for name, value in holder["usage"].items() if value is not None}
    return chunk


def _tee_answer(tee: StreamTee, raw: str, error: str) -> _Answer:
    if not tee.recognized:
        return _Answer(raw, Usage(), error=error)
    return _Answer(tee.response_body(), tee.usage, tee.model, True, error or tee.error)


def _google_stream(chunks: list[dict[str, Any]], error: str) -> _Answer:
    """Gemini's streamed `GenerateContentResponse` chunks as one response: the text of each
    candidate joined, the last finish reason and usage."""
    texts: dict[int, list[str]] = {}
    finish: dict[int, Any] = {}
    usage = model = None
    for chunk in chunks:
        for position, candidate in enumerate(chunk.get("candidates") or ()):
            if not isinstance(candidate, dict):
                continue
            index = candidate.get("index", position)
            parts = (candidate.get("content") or {}).get("parts") or ()
            texts.setdefault(index, []).extend(part["text"] for part in parts
                                               if isinstance(part, dict) and isinstance(part.get("text"), str))
            if candidate.get("finishReason"):
                finish[index] = candidate["finishReason"]
        usage = chunk.get("usageMetadata") or usage
        model = chunk.get("modelVersion") or model
    body: dict[str, Any] = {"candidates": [
        {"index": index, "content": {"role": "model", "parts": [{"text": "".join(texts[index])}]},
         **({"finishReason": finish[index]} if index in finish else {})}
        for index in sorted(texts)]}
    if usage is not None:
        body["usageMetadata"] = usage
    if model:
        body["modelVersion"] = model
    return _Answer(body, _usage(body), model or "", True, error)


def _usage(body: Any) -> Usage:
    """Token usage of a response: OpenAI's and Anthropic's shapes (formats.usage), Gemini's
    `usageMetadata`, and camel-cased `inputTokens`/`outputTokens` (the Vercel AI SDK's)."""
    usage = usage_from_body(body)
    if usage.prompt_tokens is not None or usage.completion_tokens is not None or not isinstance(body, dict):
        return usage
    google = body.get("usageMetadata")
    if isinstance(google, dict):
        prompt = _count(google.get("promptTokenCount"))
        output = [_count(google.get(name)) for name in ("candidatesTokenCount", "thoughtsTokenCount")]
        completion = None if all(n is None for n in output) else sum(n or 0 for n in output)
        return Usage(prompt, completion, _count(google.get("cachedContentTokenCount")))
    camel = body.get("usage")
    if isinstance(camel, dict) and ("inputTokens" in camel or "outputTokens" in camel):
        return Usage(_count(camel.get("inputTokens")), _count(camel.get("outputTokens")))
    return usage


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _model_of(body: dict[str, Any]) -> str:
    model = body.get("model") or body.get("modelVersion")
    if not model and isinstance(body.get("response"), dict):  # the Responses API's final event
        model = body["response"].get("model")
    return model if isinstance(model, str) else ""


def _user_of(request_json: Any) -> str:
    """The end user the request names: OpenAI's `user`, Anthropic's `metadata.user_id`."""
    if not isinstance(request_json, dict):
        return ""
    user = request_json.get("user")
    if not isinstance(user, str):
        metadata = request_json.get("metadata")
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return user[:255] if isinstance(user, str) else ""


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _limited(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…[truncated]"
