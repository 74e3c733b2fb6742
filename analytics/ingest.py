"""OpenTelemetry ingest: `POST /v1/traces` (OTLP/HTTP), and Helicone's `/v1/trace/log` and
`/v1/trace/log-python`, which take the same exports.

Each LLM span becomes a log of the org of the API key (scope `proxy` or `write`, as for the
manual log API); other spans are kept only as the structure around LLM spans (`TraceSpan`): their
names make the session path, and the user, session and properties they name apply to the LLM
calls under them. Parents end, and so are exported, after their children, so a later export can
change the session, path and user of logs already stored: they are updated then.

The logs of one export are written in one transaction with the writer's `write_batch` (as the
manual log is), not through the queue: an exporter answered 200 knows its logs are stored (it
retries a 503, so nothing is lost while the database is away), and the next export of the same
trace finds them to bring up to date. The id of a span's log is derived from the org, trace id and
span id, so a re-sent export adds nothing.

A call both proxied through the gateway and traced is logged once: the proxied log wins. A span
whose API base is a proxy route of ours (`…/oai/v1`), or that names no URL, is matched by the
provider's response id (`gen_ai.response.id`, e.g. `chatcmpl-…`), which the proxied log's stored
response carries, among the org's logs of the same model in the minutes around the span (the
(org, model, created_at) index keeps that cheap). A span sent through a proxy route waits up to a
few seconds for its proxied log to be written before it is logged on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from formats import genai, otlp
from orgs.api_auth import KeyRefused, key_for
from orgs.models import ApiKey

from . import clickhouse, rollups
from .models import RequestLog, TraceSpan
from .writer import without_nul, write_batch

log = logging.getLogger(__name__)

SCOPES = ("log", "proxy", "write")  # as the Helicone log routes (helicone_api.py)
# More spans than any SDK batches by default (512): a larger export is refused whole (413).
MAX_SPANS = 10_000
# A proxied log matches a span when created this close to the span (the app's clock may differ a little).
MATCH_WINDOW = timedelta(minutes=2)
# How long a span sent to one of our proxy routes waits for its proxied log, and how recent it must be.
PROXIED_WAIT_SECONDS = 5.0
PROXIED_RECENT_SECONDS = 60.0
# Spans are kept this long after they arrive: long enough for a trace's last spans to come; spans of a
# trace without an LLM call for an hour only.
STRUCTURE_DAYS = 7
UNUSED_STRUCTURE_HOURS = 1
_EXPIRE_EVERY_SECONDS = 600.0
_last_expiry = 0.0


class IngestError(Exception):
    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@csrf_exempt
async def export_traces(request: HttpRequest) -> HttpResponse:
    """OTLP/HTTP ExportTraceServiceRequest, protobuf or JSON, optionally gzip-compressed."""
    kind = otlp.media_type(request.headers.get("Content-Type", ""))
    answer_kind = otlp.PROTOBUF if kind == otlp.PROTOBUF else otlp.JSON
    try:
        if request.method != "POST":
            raise IngestError(405, otlp.UNIMPLEMENTED, "Send trace exports with POST", {"Allow": "POST"})
        key = await sync_to_async(authenticate)(request)
        if kind not in (otlp.PROTOBUF, otlp.JSON):
            raise IngestError(415, otlp.INVALID_ARGUMENT, f"Content-Type must be {otlp.PROTOBUF} or {otlp.JSON}, "
                                                          f"not {kind or 'missing'}")
        body = read_body(request)
        try:
            spans, rejected = await asyncio.to_thread(otlp.decode, body, kind)
        except otlp.ExportError as exc:
            raise IngestError(400, otlp.INVALID_ARGUMENT, str(exc)) from None
        if len(spans) + len(rejected) > MAX_SPANS:
            raise IngestError(413, otlp.RESOURCE_EXHAUSTED, f"An export holds at most {MAX_SPANS} spans; this one "
                                                            f"has {len(spans) + len(rejected)}: export smaller batches")
        rejected_count, message = await ingest(key, spans, rejected)
    except IngestError as exc:
        return _answer(exc.status, otlp.status_body(answer_kind, exc.code, exc.message), answer_kind, exc.headers)
    except (OperationalError, InterfaceError) as exc:
        log.warning("trace export not stored, the database is unavailable: %s", exc)
        return _answer(503, otlp.status_body(answer_kind, otlp.UNAVAILABLE, "The database is unavailable; "
                                             "the export was not stored: retry"), answer_kind, {"Retry-After": "5"})
    return _answer(200, otlp.success_body(answer_kind, rejected_count, message), answer_kind)


def _answer(status: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type=kind)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def authenticate(request: HttpRequest) -> ApiKey:
    """The API key of `Helicone-Auth: Bearer <key>` or `Authorization: Bearer <key>`."""
    try:
        return key_for(request, SCOPES)
    except KeyRefused as refused:
        code = otlp.UNAUTHENTICATED if refused.status == 401 else otlp.PERMISSION_DENIED
        raise IngestError(refused.status, code, refused.message) from None


def read_limited(request: HttpRequest, limit: int) -> bytes | None:
    """The request's body, or None past `limit` bytes (declared or sent): the ingest doors' size check."""
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    # request.read, not request.body: the body property refuses anything past 2.5 MB (Django's
    # form-upload limit), and exports and logs of long conversations are larger.
    body = request.read(limit + 1)
    return body if len(body) <= limit else None


def read_body(request: HttpRequest) -> bytes:
    """The export's bytes, inflated when gzip; 413 past the gateway's body limit either way."""
    limit = settings.GATEWAY_MAX_BODY_BYTES
    too_large = IngestError(413, otlp.RESOURCE_EXHAUSTED, f"The export exceeds the limit of {limit} bytes "
                                                          "(GATEWAY_MAX_BODY_BYTES): export smaller batches")
    body = read_limited(request, limit)
    if body is None:
        raise too_large
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise IngestError(415, otlp.INVALID_ARGUMENT, f"Content-Encoding {encoding} is not supported: "
                                                      "send gzip or no encoding")
    try:
        return otlp.gunzip(body, limit)
    except otlp.TooLarge:
        raise too_large from None
    except otlp.ExportError as exc:
        raise IngestError(400, otlp.INVALID_ARGUMENT, str(exc)) from None


# --- From spans to logs -----------------------------------------------------------------------


@dataclass
class LlmSpan:
    span: otlp.Span
    call: genai.Call
    record_id: str
    response_id: str
    matched: tuple[str, str] | None = None  # (proxied log id, its session id)


@dataclass
class Plan:
    key: ApiKey
    kept: list[otlp.Span] = field(default_factory=list)
    contexts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: dict[tuple[str, str], LlmSpan] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)

    def waiting(self) -> list[LlmSpan]:
        """New LLM spans sent through one of our proxy routes whose proxied log is not found yet."""
        now = time.time()
        return [item for item in self.calls.values()
                if item.matched is None and item.response_id and genai.looks_proxied(item.span)
                and now - item.span.end_ns / 1e9 < PROXIED_RECENT_SECONDS]


async def ingest(key: ApiKey, spans: list[otlp.Span], rejected: list[str]) -> tuple[int, str]:
    """Store what the spans say; (rejected span count, message) for the answer's partial success."""
    plan = await sync_to_async(make_plan)(key, spans, rejected)
    deadline = time.monotonic() + PROXIED_WAIT_SECONDS
    while (waiting := plan.waiting()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        await sync_to_async(match_proxied)(key.org_id, waiting)
    await sync_to_async(store)(plan)
    count = len(plan.rejected)
    if not count:
        return 0, ""
    shown = "; ".join(plan.rejected[:5]) + ("; …" if count > 5 else "")
    return count, f"{count} span{'s' if count != 1 else ''} rejected: {shown}"


def make_plan(key: ApiKey, spans: list[otlp.Span], rejected: list[str]) -> Plan:
    """Which spans to keep, the LLM calls among them, and the proxied logs they match."""
    plan = Plan(key=key, rejected=list(rejected))
    usable: list[otlp.Span] = []
    for span in spans:
        try:
            context = genai.span_context(span)
            if genai.is_llm_span(span):
                call = genai.read_call(span)
                plan.calls[(span.trace_id, span.span_id)] = LlmSpan(
                    span, call, genai.log_id(key.org_id, span), genai.response_id(span))
        except genai.SpanError as exc:
            plan.rejected.append(f"{span.where}: {exc}")
            continue
        plan.contexts[(span.trace_id, span.span_id)] = context
        usable.append(span)
    llm_spans = set(plan.calls)
    _drop_wrappers(key.org_id, plan)
    # Other spans may be the structure of LLM calls still to come (an enclosing span can arrive before
    # its children, in another export sent at the same time): kept, and forgotten soon if no LLM call
    # joins their trace. Outgoing calls (HTTP, queries, messages) are leaves and never kept.
    plan.kept = [span for span in usable
                 if (span.trace_id, span.span_id) in llm_spans or span.kind not in otlp.OUTGOING_KINDS]
    done = _stored_spans(key.org_id, plan.calls)
    for ident in done:
        plan.calls.pop(ident, None)
    match_proxied(key.org_id, [item for item in plan.calls.values() if item.response_id])
    return plan


def _drop_wrappers(org_id: int, plan: Plan) -> None:
    """An LLM span with an LLM span under it is a framework's wrapper of the same call (langchain's
    `ChatOpenAI.chat` around `openai.chat`): the innermost span is the call, the wrapper structure."""
    inner_parents = {(item.span.trace_id, item.span.parent_span_id) for item in plan.calls.values()}
    traces = {trace for trace, _ in plan.calls}
    if traces:
        inner_parents |= set(TraceSpan.objects.filter(org_id=org_id, trace_id__in=traces, log_id__isnull=False)
                             .values_list("trace_id", "parent_span_id"))
    for ident in [ident for ident in plan.calls if ident in inner_parents]:
        del plan.calls[ident]


def _stored_spans(org_id: int, calls: dict[tuple[str, str], LlmSpan]) -> set[tuple[str, str]]:
    """The LLM spans an earlier export of the same spans already stored (an exporter's retry)."""
    if not calls:
        return set()
    traces = {trace for trace, _ in calls}
    span_ids = {span for _, span in calls}
    return set(TraceSpan.objects.filter(org_id=org_id, trace_id__in=traces, span_id__in=span_ids)
               .values_list("trace_id", "span_id")) & set(calls)


def match_proxied(org_id: int, items: list[LlmSpan]) -> None:
    """Find the proxied log of each call sent through a proxy route of ours (or to a URL the span does
    not tell) by its response id, among the org's logs of its model around the span's time."""
    items = [item for item in items if item.response_id and item.matched is None
             and (genai.looks_proxied(item.span) or not genai.api_url(item.span))]
    by_model: dict[tuple[str, str], list[LlmSpan]] = {}
    for item in items:
        column = "model" if item.call.model else "requested_model"
        by_model.setdefault((column, item.call.model or item.call.requested_model), []).append(item)
    for (column, model), group in by_model.items():
        start = _moment(min(item.span.start_ns for item in group)) - MATCH_WINDOW
        end = _moment(max(item.span.end_ns for item in group)) + MATCH_WINDOW
        for first in range(0, len(group), 20):
            chunk = group[first : first + 20]
            if clickhouse.enabled():
                from .clickhouse import rows as clickhouse_rows

                rows = clickhouse_rows.with_response_ids(org_id, column, model, start, end,
                                                         [item.response_id for item in chunk])
            else:
                wanted = Q()
                for item in chunk:
                    wanted |= Q(response_body__contains=f'"{item.response_id}"')
                rows = (RequestLog.objects.filter(org_id=org_id, created_at__gte=start, created_at__lte=end,
                                                  **{column: model})
                        .exclude(source="otlp").filter(wanted).values_list("id", "response_body", "session_id")[:100])
            for log_id, body, session_id in rows:
                for item in chunk:
                    if item.matched is None and f'"{item.response_id}"' in body:
                        item.matched = (str(log_id), session_id)


def _moment(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=dt_timezone.utc)


def store(plan: Plan) -> None:
    """Keep the spans, write the new logs and bring the trace's earlier logs up to date, in one transaction."""
    traces = sorted({span.trace_id for span in plan.kept})
    if traces:
        _store_traces(plan, traces)
    _expire_structure()


def _store_traces(plan: Plan, traces: list[str]) -> None:
    org_id = plan.key.org_id
    with transaction.atomic():
        for trace_id in traces:
            _lock_trace(org_id, trace_id)
        stored = set(TraceSpan.objects.filter(org_id=org_id, trace_id__in=traces,
                                              span_id__in={span.span_id for span in plan.kept})
                     .values_list("trace_id", "span_id"))
        new_rows = []
        new_calls: dict[tuple[str, str], LlmSpan] = {}
        for span in plan.kept:
            ident = (span.trace_id, span.span_id)
            if ident in stored:
                continue
            log_id, log_kind = None, TraceSpan.LogKind.NONE
            item = plan.calls.get(ident)
            if item is not None and item.matched is not None:
                log_id = item.matched[0]
                log_kind = TraceSpan.LogKind.PROXIED if item.matched[1] else TraceSpan.LogKind.ADOPTED
            elif item is not None:
                log_id, log_kind = item.record_id, TraceSpan.LogKind.OWN
                new_calls[ident] = item
            new_rows.append(TraceSpan(
                org_id=org_id, trace_id=span.trace_id, span_id=span.span_id, parent_span_id=span.parent_span_id,
                # PostgreSQL text and JSON cannot hold NUL, which an attribute may.
                name=span.name.replace("\x00", "")[:255], started_at=_moment(span.start_ns),
                context=without_nul(plan.contexts[ident]),
                log_id=log_id, log_kind=log_kind))
        TraceSpan.objects.bulk_create(new_rows, ignore_conflicts=True)
        records = _bring_up_to_date(plan, traces, new_calls, {row.span_id for row in new_rows})
        if records:
            write_batch([without_nul(record) for record in records])


def _lock_trace(org_id: int, trace_id: str) -> None:
    """Two exports of one trace at once (two gateway processes) are stored one after the other, so
    neither misses the other's spans. SQLite has one writer at a time anyway."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(f"{org_id}:{trace_id}".encode(), digest_size=8).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)])


@dataclass
class Resolved:
    session_id: str
    session_path: str
    session_name: str
    context: dict[str, Any]


def _bring_up_to_date(plan: Plan, traces: list[str], new_calls: dict[tuple[str, str], LlmSpan],
                      added: set[str]) -> list[dict[str, Any]]:
    """Records for the new LLM spans, and updates of the trace's stored logs whose context changed."""
    org_id = plan.key.org_id
    rows = list(TraceSpan.objects.filter(org_id=org_id, trace_id__in=traces)
                .values("trace_id", "span_id", "parent_span_id", "name", "context", "log_id", "log_kind"))
    trees: dict[str, dict[str, dict]] = {}
    for row in rows:
        trees.setdefault(row["trace_id"], {})[row["span_id"]] = row
    # A stored log's context changes only when a span new in this export is above it, and any new
    # span above a stored one is the parent of some stored span.
    new_parents = {row["trace_id"] for row in rows if row["span_id"] not in added and row["parent_span_id"] in added}
    records = []
    resolved_old: dict[str, tuple[Resolved, str]] = {}
    for row in rows:
        kind = row["log_kind"]
        if kind not in (TraceSpan.LogKind.OWN, TraceSpan.LogKind.ADOPTED):
            continue
        item = new_calls.get((row["trace_id"], row["span_id"]))
        if item is not None:
            resolved = _resolve(trees[row["trace_id"]], row)
            records.append(genai.log_record(
                item.span, item.call, resolved.context, record_id=item.record_id, org_id=org_id,
                api_key_id=plan.key.id, session_id=resolved.session_id, session_path=resolved.session_path,
                session_name=resolved.session_name, body_limit=settings.GATEWAY_MAX_LOGGED_BODY_BYTES))
        elif row["trace_id"] in new_parents or (kind == TraceSpan.LogKind.ADOPTED and row["span_id"] in added):
            resolved_old[str(row["log_id"])] = (_resolve(trees[row["trace_id"]], row), kind)
    if resolved_old:
        _update_logs(org_id, resolved_old)
    return records


def _resolve(tree: dict[str, dict], row: dict) -> Resolved:
    """Session, path, name and context of an LLM span from the spans above it (those stored so far)."""
    ancestors: list[dict] = []
    seen = {row["span_id"]}
    parent = row["parent_span_id"]
    while parent and parent in tree and parent not in seen:
        seen.add(parent)
        ancestors.append(tree[parent])
        parent = tree[parent]["parent_span_id"]
    ancestors.reverse()
    context = genai.merge_contexts([a["context"] for a in ancestors] + [row["context"]])
    explicit = context.get("session_id", "")
    # A call alone in its trace (no parent span) is no session of its own unless it names one.
    session_id = explicit or (row["trace_id"] if row["parent_span_id"] else "")
    path = context.get("session_path") or "/" + "/".join(genai.path_segment(a["name"]) for a in ancestors)
    name = context.get("session_name", "")
    if not name and session_id and not explicit and ancestors and not ancestors[0]["parent_span_id"]:
        name = ancestors[0]["name"]
    return Resolved(session_id, path if session_id else "", name[:255], context)


def _update_logs(org_id: int, resolved: dict[str, tuple[Resolved, str]]) -> None:
    names = ("id", "session_id", "session_path", "session_name", "user_id", "properties", "request_omitted",
             "response_omitted")
    if clickhouse.only():
        from .clickhouse import helicone as clickhouse_helicone

        current = [{name: getattr(log, name) for name in names}
                   for log in clickhouse_helicone.logs_by_ids(org_id, list(resolved), bodies=False)]
    else:
        current = RequestLog.objects.filter(org_id=org_id, id__in=list(resolved)).values(*names)
    for row in current:
        now, kind = resolved[str(row["id"])]
        changes: dict[str, Any] = {"session_id": now.session_id, "session_path": now.session_path[:500],
                                   "session_name": now.session_name}
        if kind == TraceSpan.LogKind.OWN:
            changes["user_id"] = now.context.get("user_id") or now.context.get("call_user_id") or ""
            changes["properties"] = now.context.get("properties") or {}
            if now.context.get("omit_request") and not row["request_omitted"]:
                changes.update(request_body="", request_omitted=True)
            if now.context.get("omit_response") and not row["response_omitted"]:
                changes.update(response_body="", response_omitted=True)
        if any(row.get(name) != value for name, value in changes.items()):
            if clickhouse.only():  # ClickHouse alone holds the log (its rollups follow the edit)
                from .clickhouse import changes as clickhouse_changes

                clickhouse_changes.update(org_id, row["id"], changes)
                continue
            with transaction.atomic():
                log = (RequestLog.objects.select_for_update().only(*rollups.LOG_FIELDS)
                       .get(org_id=org_id, id=row["id"]))
                rollups.subtract([log])  # user, session and properties are rollup dimensions
                RequestLog.objects.filter(org_id=org_id, id=row["id"]).update(**changes)
                for name, value in changes.items():
                    setattr(log, name, value)
                rollups.add([log])
                if clickhouse.enabled():
                    from .clickhouse import changes as clickhouse_changes

                    clickhouse_changes.update(org_id, row["id"], changes)


def _expire_structure() -> None:
    """Forget spans of traces that ended long ago, and sooner those of traces without an LLM call,
    a batch at a time, every few minutes per process."""
    global _last_expiry
    now = time.monotonic()
    if now - _last_expiry < _EXPIRE_EVERY_SECONDS:
        return
    _last_expiry = now
    with_llm_call = TraceSpan.objects.filter(org_id=OuterRef("org_id"), trace_id=OuterRef("trace_id"),
                                             log_id__isnull=False)
    old = Q(created_at__lt=timezone.now() - timedelta(days=STRUCTURE_DAYS))
    unused = Q(created_at__lt=timezone.now() - timedelta(hours=UNUSED_STRUCTURE_HOURS)) & ~Exists(with_llm_call)
    try:
        for condition in (old, unused):
            ids = list(TraceSpan.objects.filter(condition).values_list("id", flat=True)[:5000])
            if ids:
                TraceSpan.objects.filter(id__in=ids).delete()
    except DatabaseError as exc:  # the export is stored; expiry waits for the next one
        log.warning("could not expire old trace spans: %s", exc)

