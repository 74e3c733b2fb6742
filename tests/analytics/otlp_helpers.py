"""OTLP exports built with the opentelemetry-proto classes, as an SDK's exporter builds them."""

from __future__ import annotations

import base64
import itertools
import os
import time
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

_span_ids = itertools.count(1)


def new_trace() -> bytes:
    return os.urandom(16)


def new_span_id() -> bytes:
    return next(_span_ids).to_bytes(8, "big")


def value(item: Any) -> AnyValue:
    if isinstance(item, bool):
        return AnyValue(bool_value=item)
    if isinstance(item, int):
        return AnyValue(int_value=item)
    if isinstance(item, float):
        return AnyValue(double_value=item)
    if isinstance(item, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend(value(v) for v in item)
        return out
    return AnyValue(string_value=str(item))


def attributes(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in values.items()]


def span(name: str = "openai.chat", *, trace: bytes, span_id: bytes | None = None, parent: bytes = b"",
         attrs: dict[str, Any] | None = None, events: list[tuple[str, int, dict]] = (), start_ns: int | None = None,
         duration_ms: float = 800.0, error: str = "", kind: int = Span.SPAN_KIND_INTERNAL) -> Span:
    start = start_ns or time.time_ns() - 5_000_000_000
    out = Span(trace_id=trace, span_id=span_id or new_span_id(), parent_span_id=parent, name=name,
               kind=kind, start_time_unix_nano=start,
               end_time_unix_nano=start + int(duration_ms * 1_000_000))
    out.attributes.extend(attributes(attrs or {}))
    for event_name, offset_ms, event_attrs in events:
        event = out.events.add(name=event_name, time_unix_nano=start + int(offset_ms * 1_000_000))
        event.attributes.extend(attributes(event_attrs))
    if error:
        out.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return out


def export(*spans: Span, service: str = "test-app") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = ResourceSpans()
    resource_spans.resource.attributes.extend(attributes({"service.name": service}))
    scope = ScopeSpans()
    scope.scope.name = "test"
    scope.spans.extend(spans)
    resource_spans.scope_spans.append(scope)
    request.resource_spans.append(resource_spans)
    return request


def otlp_json(value: Any) -> Any:
    """protobuf's JSON mapping -> OTLP/JSON: trace and span ids in hex rather than base64."""
    if isinstance(value, dict):
        return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else otlp_json(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [otlp_json(item) for item in value]
    return value


def as_json(request: ExportTraceServiceRequest) -> bytes:
    return orjson.dumps(otlp_json(json_format.MessageToDict(request)))


# A chat call in the current GenAI conventions, as opentelemetry-instrumentation-openai 0.62 records it.
def chat_attributes(**extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": f"chatcmpl-{os.urandom(6).hex()}",
        "gen_ai.input.messages": orjson.dumps([{"role": "user",
                                                "parts": [{"type": "text", "content": "hi"}]}]).decode(),
        "gen_ai.output.messages": orjson.dumps([{"role": "assistant", "finish_reason": "stop",
                                                 "parts": [{"type": "text", "content": "hello"}]}]).decode(),
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 500,
        **extra,
    }
