"""LLM spans (OpenTelemetry GenAI semantic conventions, OpenLLMetry, OpenInference) read as LLM calls.

Instrumentations describe one call in several generations of attribute names, and this reads them all:

- the current GenAI conventions: `gen_ai.provider.name`, `gen_ai.input.messages` /
  `gen_ai.output.messages` / `gen_ai.system_instructions` (JSON), `gen_ai.usage.input_tokens`
  (what `opentelemetry-instrumentation-openai` 0.62 sends);
- the indexed ones: `gen_ai.system`, `gen_ai.prompt.N.role|content|tool_calls.M.*`,
  `gen_ai.completion.N.*`, `gen_ai.usage.prompt_tokens` (older OpenLLMetry and other instrumentations);
- the span-event forms: `gen_ai.content.prompt` / `gen_ai.content.completion` events, and the
  `gen_ai.{system,user,assistant,tool}.message` and `gen_ai.choice` events;
- OpenInference: `openinference.span.kind = LLM`, `llm.model_name`, `llm.token_count.*`,
  `llm.input_messages.N.message.*`.

A call becomes a request body and a response body in OpenAI's chat shape, so the request page
shows an OpenTelemetry log the way it shows a proxied one. Context that enclosing spans give the
calls under them (user, session, properties, `Helicone-*` association properties) is read by
`span_context` and combined by `merge_contexts`. Pure Python, no Django.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from .headers import MAX_PROPERTIES, MAX_VALUE_LENGTH, HeaderError, parse_options
from .otlp import STATUS_ERROR, Span
from .providers import NAMED_PROVIDERS, provider_from_host

ASSOCIATION = "traceloop.association.properties."
# The ids of logs made from spans: the same span always makes the same log id, so a re-sent export
# is never stored twice (the log writer skips ids it has).
LOG_ID_NAMESPACE = uuid.UUID("5b7d3c1e-8a0f-4f4e-9d61-3c0a2f9e7b21")

# Operations that are calls to a model; agents, tools and workflows are structure around them.
_LLM_OPERATIONS = frozenset({"chat", "text_completion", "completion", "generate_content", "embeddings",
                             "embedding", "responses"})
_STRUCTURE_OPERATIONS = frozenset({"execute_tool", "invoke_agent", "create_agent", "invoke_workflow"})
_OPENINFERENCE_LLM = frozenset({"LLM", "EMBEDDING"})

# `gen_ai.provider.name` / `gen_ai.system` values -> our provider names (prices are looked up by these).
_PROVIDERS = {
    "openai": "openai", "azure.ai.openai": "azure", "az.ai.openai": "azure", "azure": "azure",
    "azure.ai.inference": "azure", "anthropic": "anthropic", "aws.bedrock": "bedrock", "bedrock": "bedrock",
    "gcp.gemini": "gemini", "gcp.vertex_ai": "gemini", "gcp.gen_ai": "gemini", "gemini": "gemini",
    "vertex_ai": "gemini", "vertexai": "gemini", "google": "gemini", "mistral_ai": "mistral",
    "mistralai": "mistral", "mistral": "mistral", "groq": "groq", "deepseek": "deepseek", "x_ai": "xai",
    "xai": "xai", "together": "together", "together_ai": "together", "togetherai": "together",
    "fireworks": "fireworks", "openrouter": "openrouter", "cohere": "cohere", "ollama": "ollama",
    "perplexity": "perplexity", "ibm.watsonx.ai": "watsonx",
}
# First path segments of this gateway's proxy routes (gateway/providers.py match_prefix): an API base
# such as http://host/oai/v1 means the call went through a gateway of ours and was logged there.
PROXY_SEGMENTS = frozenset({"oai", "anthropic", "gateway", *NAMED_PROVIDERS})

_INDEXED = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(.+)$")
_OPENINFERENCE_MESSAGE = re.compile(r"^llm\.(input|output)_messages\.(\d+)\.message\.(.+)$")
_ERROR_CODE = re.compile(r"\b(?:Error code|status(?: code)?)[: =]+([1-5]\d\d)\b", re.IGNORECASE)
_PROPERTY_NAME = re.compile(r"^[^\x00]{1,100}$")
_USER_KEYS = ("user_id", "userId", "user.id")
_SESSION_KEYS = ("session_id", "sessionId", "session.id")


class SpanError(ValueError):
    """A span that cannot be logged as it is (a bad `Helicone-*` value); the message names the attribute."""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _first(attrs: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = attrs.get(name)
        if value not in (None, "", [], {}):
            return value
    return None


def _json(value: Any) -> Any:
    """A JSON-encoded attribute parsed (structured values are taken as they are)."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode() if value is not None else ""


# --- Which spans are LLM calls ---------------------------------------------------------------


def is_llm_span(span: Span) -> bool:
    attrs = span.attributes
    kind = attrs.get("openinference.span.kind")
    if isinstance(kind, str):
        return kind.upper() in _OPENINFERENCE_LLM
    operation = attrs.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation:
        return operation in _LLM_OPERATIONS
    if attrs.get("traceloop.span.kind") in ("workflow", "task", "agent", "tool"):
        return False
    if isinstance(attrs.get("llm.request.type"), str):
        return True
    has_model = _first(attrs, "gen_ai.request.model", "gen_ai.response.model") is not None
    has_provider = _first(attrs, "gen_ai.provider.name", "gen_ai.system") is not None
    has_usage = any(name.startswith("gen_ai.usage.") for name in attrs)
    return has_model and (has_provider or has_usage)


def provider_of(span: Span) -> str:
    attrs = span.attributes
    named = _first(attrs, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
    if isinstance(named, str):
        key = named.strip().lower()
        return _PROVIDERS.get(key, key.replace(" ", "_"))[:32]
    url = api_url(span)
    return provider_from_host(url) if url else "unknown"


def api_url(span: Span) -> str:
    """The URL the call was sent to, as far as the span tells."""
    attrs = span.attributes
    url = _first(attrs, "url.full", "gen_ai.openai.api_base", "http.url")
    if isinstance(url, str):
        return url
    host = _first(attrs, "server.address", "net.peer.name")
    if isinstance(host, str):
        port = _int(attrs.get("server.port"))
        return f"https://{host}" + (f":{port}" if port and port != 443 else "")
    return ""


def looks_proxied(span: Span) -> bool:
    """Whether the span's API base is a proxy route of this gateway (the call was logged there too)."""
    path = urlsplit(api_url(span)).path
    first = path.lstrip("/").split("/", 1)[0]
    return first in PROXY_SEGMENTS


def log_id(org_id: int, span: Span) -> str:
    return str(uuid.uuid5(LOG_ID_NAMESPACE, f"{org_id}:{span.trace_id}:{span.span_id}"))


def response_id(span: Span) -> str:
    value = _first(span.attributes, "gen_ai.response.id", "llm.response.id")
    return value if isinstance(value, str) else ""


# --- Context an enclosing span gives the calls under it ---------------------------------------


def span_context(span: Span) -> dict[str, Any]:
    """The user, session and properties a span names (only what it sets); SpanError for a bad
    `Helicone-*` association property."""
    attrs = span.attributes
    association = {key[len(ASSOCIATION):]: value for key, value in attrs.items() if key.startswith(ASSOCIATION)}
    helicone = {}
    plain = {}
    for key, value in association.items():
        if value is None or isinstance(value, (dict, list)):
            continue
        text = value if isinstance(value, str) else _text(value)
        if key.lower().startswith("helicone-"):
            helicone[key.lower()] = text
        else:
            plain[key] = text
    try:
        opts = parse_options(helicone)
    except HeaderError as exc:
        raise SpanError(f"{ASSOCIATION}{exc.header}: {exc.message}") from None
    context: dict[str, Any] = {}
    user = opts.user_id or _first(attrs, "user.id", "langfuse.user.id", "enduser.id") \
        or _first(plain, *_USER_KEYS)
    if user:
        context["user_id"] = str(user)[:255]
    openai_user = attrs.get("gen_ai.user") or attrs.get("llm.user")
    if isinstance(openai_user, str) and openai_user:
        # The `user` parameter of the call: like the proxy, an explicit user id wins over it.
        context["call_user_id"] = openai_user[:255]
    session = opts.session_id or _first(attrs, "session.id", "langfuse.session.id", "gen_ai.conversation.id") \
        or _first(plain, *_SESSION_KEYS)
    if session:
        context["session_id"] = str(session)[:255]
    for name in ("session_name", "session_path", "request_name", "prompt_id"):
        if getattr(opts, name):
            context[name] = getattr(opts, name)
    if opts.omit_request:
        context["omit_request"] = True
    if opts.omit_response:
        context["omit_response"] = True
    properties = dict(opts.properties)
    for key, value in plain.items():
        if key in _USER_KEYS or key in _SESSION_KEYS or "__" in key or not _PROPERTY_NAME.match(key):
            continue
        if len(properties) >= MAX_PROPERTIES:
            break
        properties.setdefault(key, value[:MAX_VALUE_LENGTH].replace("\x00", ""))
    if properties:
        context["properties"] = properties
    return context


def merge_contexts(contexts: list[dict[str, Any]]) -> dict[str, Any]:
    """Contexts from the outermost span to the call's own: a nearer span's value wins."""
    merged: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for context in contexts:
        for key, value in context.items():
            if key == "properties":
                properties.update(value)
            else:
                merged[key] = value
    if properties:
        merged["properties"] = properties
    return merged


def path_segment(name: str) -> str:
    # A "/" inside a span name ("POST /v1/chat") would read as two levels of the session tree.
    return (name or "span").replace("/", "\u2215").strip() or "span"


# --- The call -------------------------------------------------------------------------------


@dataclass(slots=True)
class Call:
    provider: str
    requested_model: str
    model: str
    status: int
    error: str
    streamed: bool
    request: dict[str, Any]
    response: dict[str, Any]
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    cache_write_tokens: int | None
    ttft_ms: float | None
    target_url: str


def read_call(span: Span) -> Call:
    attrs = span.attributes
    requested = _first(attrs, "gen_ai.request.model", "llm.request.model", "llm.model_name")
    served = _first(attrs, "gen_ai.response.model", "llm.response.model", "llm.model_name") or requested
    requested = str(requested or "")[:200]
    served = str(served or "")[:200]
    prompt = _int(_first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                         "llm.usage.prompt_tokens", "llm.token_count.prompt"))
    completion = _int(_first(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                             "llm.usage.completion_tokens", "llm.token_count.completion"))
    cached = _int(_first(attrs, "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                         "llm.token_count.prompt_details.cache_read"))
    cache_write = _int(_first(attrs, "gen_ai.usage.cache_creation.input_tokens",
                              "gen_ai.usage.cache_creation_input_tokens",
                              "llm.token_count.prompt_details.cache_write"))
    streamed = bool(_first(attrs, "gen_ai.is_streaming", "llm.is_streaming", "gen_ai.request.stream"))
    status, error = _outcome(span)
    messages, choices = _conversation(span)
    operation = attrs.get("gen_ai.operation.name") or attrs.get("llm.request.type") or ""
    request = _request_body(span, requested, messages, streamed, operation)
    response = _response_body(span, served, choices, prompt, completion, cached, status, error, operation)
    return Call(
        provider=provider_of(span), requested_model=requested, model=served, status=status, error=error[:5000],
        streamed=streamed, request=request, response=response, prompt_tokens=prompt, completion_tokens=completion,
        cached_tokens=cached, cache_write_tokens=cache_write, ttft_ms=_ttft(span), target_url=api_url(span),
    )


def _outcome(span: Span) -> tuple[int, str]:
    """(HTTP status, error text): 200 unless the span failed; a failure without a known HTTP status is 0."""
    attrs = span.attributes
    events = [e for e in span.events if e.name == "exception"]
    error_type = attrs.get("error.type")
    if span.status_code != STATUS_ERROR and not error_type:
        return 200, ""
    message = span.status_message
    if events:
        exc = events[0].attributes
        detail = f"{exc.get('exception.type', '')}: {exc.get('exception.message', '')}".strip(": ")
        message = message if detail in message else (f"{message}\n{detail}" if message else detail)
    message = message or str(error_type or "error")
    status = _int(_first(attrs, "http.response.status_code", "http.status_code"))
    if status is None:
        found = _ERROR_CODE.search(message)
        status = int(found.group(1)) if found else 0
    return status, message


def _ttft(span: Span) -> float | None:
    # Streamed calls record an event per chunk: the first one's time is the time to first token.
    for event in span.events:
        if event.name in _CHUNK_EVENTS:
            if event.time_ns >= span.start_ns:
                return round((event.time_ns - span.start_ns) / 1e6, 3)
    value = span.attributes.get("gen_ai.server.time_to_first_token")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(float(value) * 1000, 3)  # seconds, as the GenAI conventions measure it
    return None


def _request_body(span: Span, model: str, messages: list[dict], streamed: bool, operation: str) -> dict[str, Any]:
    attrs = span.attributes
    raw = _openinference_json(attrs, "input")
    if isinstance(raw, dict) and ("messages" in raw or "input" in raw or "prompt" in raw):
        return raw
    body: dict[str, Any] = {"model": model} if model else {}
    if operation in ("embeddings", "embedding"):
        inputs = [m.get("content") for m in messages if isinstance(m.get("content"), str)]
        if inputs:
            body["input"] = inputs
        return body
    if messages:
        body["messages"] = messages
    for name, key in (("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p"),
                      ("max_tokens", "gen_ai.request.max_tokens"), ("seed", "gen_ai.request.seed"),
                      ("frequency_penalty", "gen_ai.request.frequency_penalty"),
                      ("presence_penalty", "gen_ai.request.presence_penalty")):
        if attrs.get(key) is not None:
            body[name] = attrs[key]
    tools = _json(attrs.get("gen_ai.tool.definitions"))
    if isinstance(tools, list) and tools:
        body["tools"] = [_tool_definition(tool) for tool in tools if isinstance(tool, dict)]
    if streamed:
        body["stream"] = True
    user = attrs.get("gen_ai.user")
    if isinstance(user, str) and user:
        body["user"] = user
    return body


def _tool_definition(tool: dict) -> dict:
    if "function" in tool:
        return tool
    function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
    return {"type": tool.get("type") or "function", "function": function}


def _response_body(span: Span, model: str, choices: list[dict], prompt: int | None, completion: int | None,
                   cached: int | None, status: int, error: str, operation: str) -> dict[str, Any]:
    raw = _openinference_json(span.attributes, "output")
    if isinstance(raw, dict) and ("choices" in raw or "content" in raw or "output" in raw):
        return raw
    if error and not choices:
        return {"error": {"message": error, "type": str(span.attributes.get("error.type") or "error")}}
    body: dict[str, Any] = {}
    ident = response_id(span)
    if ident:
        body["id"] = ident
    if operation in ("embeddings", "embedding"):
        body.update({"object": "list", "model": model})
    else:
        body.update({"object": "chat.completion", "model": model, "choices": choices})
    if prompt is not None or completion is not None:
        usage: dict[str, Any] = {"prompt_tokens": prompt or 0, "completion_tokens": completion or 0,
                                 "total_tokens": (prompt or 0) + (completion or 0)}
        if cached is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        body["usage"] = usage
    return body


def _openinference_json(attrs: dict[str, Any], side: str) -> Any:
    if attrs.get(f"{side}.mime_type") != "application/json":
        return None
    value = _json(attrs.get(f"{side}.value"))
    return value if isinstance(value, dict) else None


# --- Messages in every form, as OpenAI chat messages -----------------------------------------


def _conversation(span: Span) -> tuple[list[dict], list[dict]]:
    """(request messages, response choices) from whichever form the span carries."""
    attrs = span.attributes
    messages: list[dict] = []
    choices: list[dict] = []
    system = _json(attrs.get("gen_ai.system_instructions"))
    if isinstance(system, list) and system:
        messages.append({"role": "system", "content": _parts_text(system)})
    elif isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    structured_in = _json(attrs.get("gen_ai.input.messages"))
    if isinstance(structured_in, list):
        for item in structured_in:
            messages.extend(_from_parts_message(item))
    structured_out = _json(attrs.get("gen_ai.output.messages"))
    if isinstance(structured_out, list):
        for index, item in enumerate(structured_out):
            if isinstance(item, dict):
                message = (_from_parts_message(item) or [{"role": "assistant", "content": None}])[0]
                choices.append({"index": index, "message": message,
                                "finish_reason": _finish(item.get("finish_reason"), span, index)})
    if not structured_in and not structured_out:
        indexed_in, indexed_out = _indexed(attrs, _INDEXED, "gen_ai")
        if not indexed_in and not indexed_out:
            indexed_in, indexed_out = _indexed(attrs, _OPENINFERENCE_MESSAGE, "openinference")
        messages.extend(indexed_in)
        choices.extend({"index": i, "message": m, "finish_reason": _finish(m.pop("finish_reason", None), span, i)}
                       for i, m in enumerate(indexed_out))
    if not messages and not choices:
        messages, choices = _from_events(span)
    return messages, choices


def _finish(value: Any, span: Span, index: int) -> str | None:
    if isinstance(value, str) and value:
        return value
    reasons = span.attributes.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, list) and index < len(reasons) and isinstance(reasons[index], str):
        return reasons[index]
    if isinstance(reasons, str):
        return reasons
    return None


def _parts_text(parts: list) -> str:
    return "\n".join(_text(part.get("content")) for part in parts
                     if isinstance(part, dict) and part.get("type", "text") == "text")


def _from_parts_message(item: Any) -> list[dict]:
    """A `gen_ai.input.messages` / `output.messages` entry ({role, parts}) as OpenAI chat messages
    (tool results become one `tool` message each)."""
    if not isinstance(item, dict):
        return []
    role = item.get("role") if isinstance(item.get("role"), str) else "user"
    parts = item.get("parts")
    if not isinstance(parts, list):
        content = item.get("content")
        return [{"role": role, "content": content if isinstance(content, (str, list)) else _text(content)}]
    texts: list[dict] = []
    calls: list[dict] = []
    results: list[dict] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type", "text")
        if kind == "text":
            texts.append({"type": "text", "text": _text(part.get("content"))})
        elif kind == "tool_call":
            calls.append({"id": str(part.get("id") or ""), "type": "function",
                          "function": {"name": str(part.get("name") or ""),
                                       "arguments": _arguments(part.get("arguments"))}})
        elif kind == "tool_call_response":
            results.append({"role": "tool", "tool_call_id": str(part.get("id") or ""),
                            "content": _text(part.get("response", part.get("result")))})
        elif kind == "uri" and part.get("modality") == "image":
            texts.append({"type": "image_url", "image_url": {"url": str(part.get("uri") or "")}})
        elif kind == "reasoning":
            continue
        else:
            texts.append({"type": "text", "text": f"[{kind}]"})
    out: list[dict] = []
    if texts or calls or not results:
        content: Any = texts[0]["text"] if len(texts) == 1 and texts[0]["type"] == "text" else (texts or None)
        message: dict[str, Any] = {"role": role, "content": content}
        if calls:
            message["tool_calls"] = calls
        if isinstance(item.get("name"), str):
            message["name"] = item["name"]
        out.append(message)
    return out + results


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value if value is not None else {}).decode()


def _indexed(attrs: dict[str, Any], pattern: re.Pattern, form: str) -> tuple[list[dict], list[dict]]:
    """`gen_ai.prompt.N.*` / `gen_ai.completion.N.*` (or OpenInference's `llm.input_messages.N.message.*`)."""
    sides: dict[str, dict[int, dict[str, Any]]] = {"in": {}, "out": {}}
    for key, value in attrs.items():
        found = pattern.match(key)
        if not found:
            continue
        side = "in" if found.group(1) in ("prompt", "input") else "out"
        sides[side].setdefault(int(found.group(2)), {})[found.group(3)] = value
    return ([_indexed_message(fields, form) for _, fields in sorted(sides["in"].items())],
            [_indexed_message(fields, form) for _, fields in sorted(sides["out"].items())])


def _indexed_message(fields: dict[str, Any], form: str) -> dict[str, Any]:
    role = fields.get("role") if isinstance(fields.get("role"), str) else "user"
    content = fields.get("content")
    if content is None and form == "openinference":
        texts = [fields[k] for k in sorted(fields) if k.startswith("contents.") and k.endswith("message_content.text")]
        content = "\n".join(str(t) for t in texts) if texts else None
    parsed = _json(content)
    message: dict[str, Any] = {"role": role, "content": parsed if isinstance(parsed, list) else content}
    calls: dict[int, dict[str, Any]] = {}
    for key, value in fields.items():
        found = re.match(r"^tool_calls\.(\d+)\.(?:tool_call\.)?(?:function\.)?(id|name|arguments)$", key)
        if found:
            calls.setdefault(int(found.group(1)), {})[found.group(2)] = value
    if not calls and ("function_call.name" in fields):
        calls[0] = {"name": fields["function_call.name"], "arguments": fields.get("function_call.arguments", "")}
    if calls:
        message["tool_calls"] = [{"id": str(c.get("id") or ""), "type": "function",
                                  "function": {"name": str(c.get("name") or ""),
                                               "arguments": _arguments(c.get("arguments"))}}
                                 for _, c in sorted(calls.items())]
    if isinstance(fields.get("tool_call_id"), str):
        message["tool_call_id"] = fields["tool_call_id"]
    if isinstance(fields.get("finish_reason"), str):
        message["finish_reason"] = fields["finish_reason"]
    return message


_CHUNK_EVENTS = frozenset({"gen_ai.content.completion.chunk", "llm.content.completion.chunk",
                           "First Token Stream Event"})
_EVENT_ROLES = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}


def _from_events(span: Span) -> tuple[list[dict], list[dict]]:
    messages: list[dict] = []
    choices: list[dict] = []
    for event in span.events:
        attrs = event.attributes
        if event.name == "gen_ai.content.prompt":
            value = _json(attrs.get("gen_ai.prompt"))
            if isinstance(value, list):
                messages.extend(m for m in value if isinstance(m, dict))
        elif event.name == "gen_ai.content.completion":
            value = _json(attrs.get("gen_ai.completion"))
            for item in value if isinstance(value, list) else ():
                if isinstance(item, dict):
                    message = item.get("message") if isinstance(item.get("message"), dict) else item
                    choices.append({"index": len(choices), "message": {k: v for k, v in message.items()
                                                                       if k != "finish_reason"},
                                    "finish_reason": item.get("finish_reason")})
        elif event.name in _EVENT_ROLES:
            message: dict[str, Any] = {"role": attrs.get("role") or _EVENT_ROLES[event.name],
                                       "content": _json(attrs.get("content"))}
            calls = _json(attrs.get("tool_calls"))
            if isinstance(calls, list) and calls:
                message["tool_calls"] = calls
            if event.name == "gen_ai.tool.message" and attrs.get("id"):
                message["tool_call_id"] = str(attrs["id"])
            messages.append(message)
        elif event.name == "gen_ai.choice":
            message = _json(attrs.get("message"))
            choices.append({"index": _int(attrs.get("index")) or len(choices),
                            "message": message if isinstance(message, dict) else {"role": "assistant",
                                                                                  "content": message},
                            "finish_reason": attrs.get("finish_reason")})
    return messages, choices


# --- The log record --------------------------------------------------------------------------


def log_record(span: Span, call: Call, context: dict[str, Any], *, record_id: str, org_id: int,
               api_key_id: int | None, session_id: str, session_path: str, session_name: str,
               body_limit: int) -> dict[str, Any]:
    """The log writer's record for an LLM span: the same keys the proxy's records have."""
    omit_request = bool(context.get("omit_request"))
    omit_response = bool(context.get("omit_response"))
    return {
        "id": record_id,
        "org_id": org_id,
        "api_key_id": api_key_id,
        "created_at": span.start_ns / 1e9,
        "source": "otlp",
        "provider": call.provider,
        "method": "POST",
        "target_url": call.target_url[:2000],
        "path": urlsplit(call.target_url).path if call.target_url else "",
        "requested_model": call.requested_model,
        "model": call.model,
        "status": call.status,
        "error": call.error,
        "streamed": call.streamed,
        "request_headers": {},
        "request_body": "" if omit_request else _limited(call.request, body_limit),
        "response_body": "" if omit_response else _limited(call.response, body_limit),
        "request_omitted": omit_request,
        "response_omitted": omit_response,
        "latency_ms": round((span.end_ns - span.start_ns) / 1e6, 3),
        "ttft_ms": call.ttft_ms,
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "cached_tokens": call.cached_tokens,
        "cache_write_tokens": call.cache_write_tokens,
        "user_id": context.get("user_id") or context.get("call_user_id") or "",
        "session_id": session_id,
        "session_path": session_path[:500],
        "session_name": session_name[:255],
        "properties": context.get("properties") or {},
        "request_name": context.get("request_name", "")[:255],
        "prompt_id": context.get("prompt_id", "")[:100],
    }


def _limited(body: dict[str, Any], limit: int) -> str:
    text = orjson.dumps(body).decode()
    return text if len(text) <= limit else text[:limit] + "…[truncated]"
