"""OTLP/HTTP trace exports: the body read into spans, and the answers the OTLP specification asks for.

Protobuf (`application/x-protobuf`) is decoded with the OpenTelemetry project's own classes
(`opentelemetry-proto`); JSON (`application/json`) is read into the same message with protobuf's
JSON mapping, after the one difference OTLP/JSON makes: trace and span ids are hex, not base64.
An export that cannot be read at all raises `ExportError` (a 400); a span that can be read but
not used (an id of the wrong length) is left out and reported back as rejected.
Pure Python, no Django.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# google.rpc.Code values for the Status an error answer carries.
INVALID_ARGUMENT = 3
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
UNAVAILABLE = 14
UNAUTHENTICATED = 16

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
# Spans that call out of the process (an HTTP request, a query, a message sent or received): leaves,
# never the structure around an LLM call.
OUTGOING_KINDS = frozenset({3, 4, 5})


class ExportError(ValueError):
    """An export that cannot be read; the message names what is wrong (and where)."""


class TooLarge(ValueError):
    """A body past the size limit once decompressed."""


@dataclass(slots=True)
class Event:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(slots=True)
class Span:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # e.g. "resourceSpans[0].scopeSpans[1].spans[2]", for messages about this span
    kind: int = 0  # SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body inflated, refusing (TooLarge) to grow past `limit` bytes: a small bomb stays small."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
        if len(data) > limit or inflater.unconsumed_tail:
            raise TooLarge()
        data += inflater.flush()
    except zlib.error as exc:
        raise ExportError(f"Content-Encoding is gzip but the body is not valid gzip ({exc})") from None
    if not inflater.eof:
        raise ExportError("Content-Encoding is gzip but the body is truncated")
    if len(data) > limit:
        raise TooLarge()
    return data


def decode(body: bytes, kind: str) -> tuple[list[Span], list[str]]:
    """The spans of an export (protobuf or JSON, by media type) and the reasons spans were rejected."""
    request = parse_json(body) if kind == JSON else parse_protobuf(body)
    return spans_of(request)


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    try:
        return ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise ExportError(f"The body is not an OTLP ExportTraceServiceRequest in protobuf ({exc})") from None


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ExportError(f"The body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ExportError("The body must be a JSON object (an OTLP ExportTraceServiceRequest)")
    _hex_ids_to_base64(data)
    try:
        # Unknown fields are ignored, as OTLP asks of receivers (a newer sender may add some).
        return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ExportError(f"The body is not an OTLP ExportTraceServiceRequest: {exc}") from None


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ExportError(f"{where} must be an array")
    return value


def _hex_ids_to_base64(data: dict) -> None:
    """OTLP/JSON writes traceId and spanId as hex; protobuf's JSON mapping reads bytes as base64."""
    for r, resource_spans in enumerate(_list(_either(data, "resourceSpans", "resource_spans"), "resourceSpans")):
        where_r = f"resourceSpans[{r}]"
        if not isinstance(resource_spans, dict):
            continue
        for s, scope_spans in enumerate(_list(_either(resource_spans, "scopeSpans", "scope_spans"),
                                              f"{where_r}.scopeSpans")):
            if not isinstance(scope_spans, dict):
                continue
            for n, span in enumerate(_list(scope_spans.get("spans"), f"{where_r}.scopeSpans[{s}].spans")):
                where = f"{where_r}.scopeSpans[{s}].spans[{n}]"
                if not isinstance(span, dict):
                    continue
                _convert_ids(span, where, ("traceId", "trace_id", "spanId", "span_id", "parentSpanId",
                                           "parent_span_id"))
                for k, link in enumerate(_list(span.get("links"), f"{where}.links")):
                    if isinstance(link, dict):
                        _convert_ids(link, f"{where}.links[{k}]", ("traceId", "trace_id", "spanId", "span_id"))


def _either(data: dict, camel: str, snake: str) -> Any:
    return data[camel] if camel in data else data.get(snake)


def _convert_ids(obj: dict, where: str, names: tuple[str, ...]) -> None:
    for name in names:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ExportError(f"{where}.{name} must be a hex string")
        try:
            obj[name] = base64.b64encode(bytes.fromhex(value)).decode()
        except ValueError:
            raise ExportError(f"{where}.{name} is not hex: {value[:40]!r}") from None


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as plain Python (None when unset)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: any_value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def attributes(items) -> dict[str, Any]:
    return {item.key: any_value(item.value) for item in items}


def spans_of(request: ExportTraceServiceRequest) -> tuple[list[Span], list[str]]:
    spans: list[Span] = []
    rejected: list[str] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for n, raw in enumerate(scope_spans.spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                problem = _id_problem(raw.trace_id, 16, "traceId") or _id_problem(raw.span_id, 8, "spanId")
                if not problem and raw.parent_span_id and len(raw.parent_span_id) != 8:
                    problem = "parentSpanId must be 8 bytes (16 hex digits) or empty"
                if not problem and raw.end_time_unix_nano and raw.end_time_unix_nano < raw.start_time_unix_nano:
                    problem = "endTimeUnixNano is before startTimeUnixNano"
                if not problem and not raw.start_time_unix_nano:
                    problem = "startTimeUnixNano is missing"
                if problem:
                    rejected.append(f"{where}: {problem}")
                    continue
                spans.append(Span(
                    trace_id=raw.trace_id.hex(),
                    span_id=raw.span_id.hex(),
                    parent_span_id=raw.parent_span_id.hex(),
                    name=raw.name,
                    start_ns=raw.start_time_unix_nano,
                    end_ns=raw.end_time_unix_nano or raw.start_time_unix_nano,
                    status_code=raw.status.code,
                    status_message=raw.status.message,
                    attributes=attributes(raw.attributes),
                    events=[Event(e.name, e.time_unix_nano, attributes(e.attributes)) for e in raw.events],
                    resource=resource,
                    where=where,
                    kind=raw.kind,
                ))
    return spans, rejected


def _id_problem(value: bytes, size: int, name: str) -> str | None:
    if len(value) != size:
        return f"{name} must be {size} bytes ({size * 2} hex digits), got {len(value)}"
    if not any(value):
        return f"{name} must not be all zeros"
    return None


# --- Answers -------------------------------------------------------------------------------


def success_body(kind: str, rejected: int = 0, message: str = "") -> bytes:
    """ExportTraceServiceResponse, with partial_success when spans were rejected (or a warning given)."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if kind == PROTOBUF:
        return response.SerializeToString()
    return orjson.dumps(json_format.MessageToDict(response))


def status_body(kind: str, code: int, message: str) -> bytes:
    """A google.rpc.Status, the body OTLP gives every error answer, in the request's encoding."""
    if kind == PROTOBUF:
        # Two fields, encoded by hand rather than adding googleapis-common-protos for one message:
        # 1 (code, varint) and 2 (message, length-delimited UTF-8).
        text = message.encode()
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
    return orjson.dumps({"code": code, "message": message})


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)

