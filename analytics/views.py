"""Dashboard, request explorer, request detail, sessions and users pages.

Every page goes through `org_member_required` and reads logs only through
`queries.logs_for(org, ...)`, bounded by a time range (default 24 hours), so
the database aggregates a window through the (org, ..., created_at) indexes.
"""

from __future__ import annotations

import functools
import json
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, F, Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from orgs.access import org_member_required
from orgs.models import Membership, Organization, Role

from . import charts, clickhouse, metrics, pricing, rollup_reads, rollups, saved_views
from .actions import get_log, scores_of
from .models import Feedback, RequestLog, Rollup
from .panel_views import replay_curl
from .queries import (
    MAX_CUSTOM_RANGE,
    RANGES,
    Conditions,
    FilterError,
    RangeError,
    Selection,
    logs_for,
    parse_conditions,
    time_range,
    utc_label,
)
from .rollups import Measures

PAGE_SIZE = 50
# Picker values (models, property keys...) come from the newest logs, not a scan of the range.
PICKER_SAMPLE = 3000

SORTS = {
    "newest": ("-created_at", "Newest"),
    "oldest": ("created_at", "Oldest"),
    "slowest": ("-latency_ms", "Slowest"),
    "fastest": ("latency_ms", "Fastest"),
    "costliest": ("-cost_usd", "Most expensive"),
    "tokens": ("-completion_tokens", "Most output tokens"),
}


def _range_context(request: HttpRequest) -> dict[str, Any]:
    """The page's time range (queries.time_range) and what its templates show and link with.
    Raises RangeError for a custom range that cannot be read."""
    chosen = time_range(request.GET)
    label = f"{utc_label(chosen.start)} – {utc_label(chosen.end)}" if chosen.custom else f"the last {chosen.key}"
    return {"range": chosen.key, "start": chosen.start, "end": chosen.end, "ranges": list(RANGES),
            "custom": chosen.custom, "range_label": label, "range_query": urlencode(chosen.query),
            "range_params": chosen.query, "fixed_end": bool(chosen.given_to),
            "from_input": _local_input(chosen.start), "to_input": _local_input(chosen.end) if chosen.given_to else ""}


def _local_input(moment: datetime) -> str:
    """A `datetime-local` input's value (UTC, to the minute: the URL keeps any seconds)."""
    return moment.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M")


def with_range(view):
    """Gives a page its range context; a custom range that cannot be read is a 400 page that names
    the parameter and offers the range picker again (never a silent fallback to a preset)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, org: Organization, membership: Membership, *args, **kwargs) -> HttpResponse:
        try:
            ctx = _range_context(request)
        except RangeError as exc:
            return render(request, "analytics/range_error.html", {
                "org": org, "membership": membership, "error": str(exc), "range": "", "ranges": list(RANGES),
                "custom": False, "from_input": "", "to_input": "",
                "max_days": MAX_CUSTOM_RANGE.days,
            }, status=400)
        return view(request, org, membership, ctx, *args, **kwargs)

    return wrapper


def _pickers(org: Organization, sample: int = PICKER_SAMPLE) -> dict[str, list[str]]:
    """Values seen in the last 30 days (the rollups' days), else in the newest logs, for the pickers."""
    if clickhouse.enabled():
        from .clickhouse import reads

        return _picked(reads.picker_values(org.pk, timezone.now() - timedelta(days=30)))
    days = Rollup.objects.filter(org=org, grain="d", overflow=False, requests__gt=0,
                                 bucket__gte=rollups.floor(timezone.now() - timedelta(days=30), "d")).order_by()
    # A range of dim for the properties ("p:" up to "p;"), so each query is a range of the rollup index.
    seen = [days.filter(dim=dim).values_list("dim", "value").distinct()[:1000] for dim in ("model", "provider", "name")]
    seen.append(days.filter(dim__gte=rollups.PROPERTY_PREFIX, dim__lt="p;").values_list("dim", "value").distinct()[:5000])
    values: dict[str, set[str]] = {}
    for dim, value in (pair for query in seen for pair in query):
        bucket = values.setdefault(dim, set())
        if len(bucket) < 50:
            bucket.add(value)
    if not values:
        values = _recent_values(org, sample)
    return _picked(values)


def _picked(values: dict[str, set[str]]) -> dict[str, Any]:
    properties = {dim[len(rollups.PROPERTY_PREFIX):]: found for dim, found in values.items()
                  if dim.startswith(rollups.PROPERTY_PREFIX)}
    return {
        "models": sorted(m for m in values.get("model", ()) if m),
        "providers": sorted(p for p in values.get("provider", ()) if p),
        "request_names": sorted(n for n in values.get("name", ()) if n),
        "property_keys": sorted(properties),
        "property_values": {key: sorted(found) for key, found in sorted(properties.items())},
    }


def _recent_values(org: Organization, sample: int) -> dict[str, set[str]]:
    """The same from the newest logs (an org whose rollups are not built yet)."""
    recent = (RequestLog.objects.filter(org=org).order_by("-created_at")
              .values_list("model", "provider", "properties", "request_name")[:sample])
    values: dict[str, set[str]] = {"model": set(), "provider": set(), "name": set()}
    for model, provider, props, name in recent:
        values["model"].add(model)
        values["provider"].add(provider)
        values["name"].add(name)
        for key, value in (props or {}).items():
            found = values.setdefault(rollups.PROPERTY_PREFIX + key, set())
            if len(found) < 50:
                found.add(str(value))
    return values


# --- Dashboard ---------------------------------------------------------------------------

# Similarity thresholds the dashboard shows shadow-mode semantic candidates at.
SHADOW_THRESHOLDS = (0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99)


def _cache_split(matches: list[dict[str, Any]], shadow_bands: list[dict[str, Any]], totals: dict[str, Any],
                 floor: float) -> dict[str, Any]:
    """Exact and semantic hits with what each saved, and what shadow mode would have served per
    threshold (from the rollups, like every other tile)."""
    semantic = next((g for g in matches if g["key"] == "semantic"), None)
    semantic_hits = semantic["count"] if semantic else 0
    semantic_saved = semantic["cost_usd"] if semantic else 0.0
    bands = [(float(g["key"]), g["count"], g["cost_usd"]) for g in shadow_bands]
    thresholds = sorted({*SHADOW_THRESHOLDS, round(floor, 2)})
    shadow = [{"threshold": t, "is_floor": t == round(floor, 2),
               "requests": sum(count for band, count, _ in bands if band >= t - 1e-9),
               "saved_usd": sum(cost for band, count, cost in bands if band >= t - 1e-9)} for t in thresholds]
    return {"exact_hits": totals["cache_hits"] - semantic_hits, "exact_saved_usd": totals["saved_usd"] - semantic_saved,
            "semantic_hits": semantic_hits, "semantic_saved_usd": semantic_saved,
            "shadow": shadow if bands else []}


@org_member_required()
@with_range
def dashboard(request: HttpRequest, org: Organization, membership: Membership, ctx: dict[str, Any]) -> HttpResponse:
    # Read from the rollups (analytics.rollup_reads): the cost of a page does not grow with the traffic.
    selection = Selection(org, ctx["start"], ctx["end"])
    interval = metrics.pick_interval(ctx["end"] - ctx["start"])
    pickers = _pickers(org, sample=500)
    property_key = request.GET.get("property") or (pickers["property_keys"][0] if pickers["property_keys"] else "")
    notice = ""
    try:
        # Two queries with ClickHouse, each answering several tiles (metrics.summary_and_timeseries, grouped_many).
        totals, series = metrics.summary_and_timeseries(
            selection, interval, fill=True, percentiles=("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"))
        groupings = [metrics.Grouping("model", order_by="-cost_usd", limit=8),
                     metrics.Grouping("user", exclude_empty=True, limit=8, count_values=True),
                     metrics.Grouping("cache_match"), metrics.Grouping("shadow_similarity", exclude_empty=True)]
        if property_key and "__" not in property_key and len(property_key) <= 200:
            groupings.append(metrics.Grouping(f"property:{property_key}", limit=8, exclude_empty=True))
        answers = metrics.grouped_many(selection, groupings)
        (by_model, _), (users, active_users), (matches, _), (shadow_bands, _) = answers[:4]
        top_values = answers[4][0] if len(answers) > 4 else []
        cache_split = _cache_split(matches, shadow_bands, totals, org.semantic_cache_threshold)
    except metrics.TooSlow:
        # Only an org whose rollups are not built yet reads raw rows here.
        notice = ("This range takes too long to read from the raw logs: the organization's rollups are not "
                  "built yet (an operator runs `manage.py rebuild_rollups`). Choose a shorter range meanwhile.")
        totals = rollup_reads.finish(Measures())
        series = metrics.timeseries(Selection(org, ctx["end"], ctx["end"]), interval, ctx["start"], ctx["end"],
                                    fill=True)
        by_model, users, top_values, cache_split, active_users = [], [], [], None, 0
    times = [bucket["time"] for bucket in series]
    step = metrics.INTERVALS[interval][1]
    totals["active_users"] = active_users
    top_users = users[:8]
    explore = reverse("request_list", args=[org.slug])
    in_range = "?" + ctx["range_query"] + "&"
    if clickhouse.enabled():
        from .clickhouse import rows

        # The newest ten of the last hour are the range's when there are ten (10M logs a month: ~70 -> ~30 ms).
        recent = rows.page(Selection(org, max(ctx["start"], ctx["end"] - timedelta(hours=1)), ctx["end"]), limit=10)
        if len(recent) < 10 and ctx["end"] - ctx["start"] > timedelta(hours=1):
            recent = rows.page(selection, limit=10)
    else:
        recent = list(selection.qs.order_by("-created_at")
                      .defer("request_body", "response_body", "request_headers")[:10])

    ctx.update({
        "org": org,
        "membership": membership,
        "notice": notice,
        "quickstart": None if recent or totals["count"] or _has_logs(org) else _quickstart(request),
        "totals": totals,
        "interval": interval,
        # Charts: a click opens the explorer at the bucket (and series), a drag zooms this page.
        "requests_chart": charts.figure(
            "columns", times, [("successful", [b["count"] - b["errors"] for b in series]),
                               ("errors", [b["errors"] for b in series])],
            step=step, label="Requests over time", colors=["#4f46e5", "#ef4444"], explore=explore,
            explore_params=[{}, {"status": "error"}], zoom=True),
        "cost_chart": charts.figure("lines", times, [("cost", [b["cost_usd"] for b in series])], charts.usd,
                                    step=step, area=True, label="Cost over time", explore=explore,
                                    explore_params=[{"sort": "costliest"}], zoom=True),
        "latency_chart": charts.figure(
            "lines", times, [("P50", [b["latency_p50_ms"] for b in series]),
                             ("P95", [b["latency_p95_ms"] for b in series]),
                             ("P99", [b["latency_p99_ms"] for b in series])], charts.ms,
            step=step, label="Latency percentiles", explore=explore, explore_params=[{"sort": "slowest"}] * 3,
            zoom=True),
        "errors_chart": charts.figure("columns", times, [("errors", [b["errors"] for b in series])], step=step,
                                      label="Errors over time", colors=["#ef4444"], explore=explore,
                                      explore_params=[{"status": "error"}], zoom=True),
        # Top lists: each row opens the explorer filtered to it, in the page's range.
        "cost_by_model": charts.bars(
            [(g["key"] or "(unknown)", g["cost_usd"]) for g in by_model], charts.usd,
            links=[explore + in_range + urlencode({"model": g["key"]}) if g["key"] else "" for g in by_model]),
        "top_users": charts.bars([(g["key"], g["count"]) for g in top_users],
                                 links=[explore + in_range + urlencode({"user_id": g["key"]}) for g in top_users]),
        "property_key": property_key,
        "property_keys": pickers["property_keys"],
        "top_values": charts.bars(
            [(str(g["key"]), g["count"]) for g in top_values],
            links=[explore + in_range + urlencode({"prop_key": property_key, "prop_value": str(g["key"])})
                   for g in top_values]),
        "recent": recent,
        "cache_split": cache_split,
        # A range that ends at a fixed time does not grow: no live updates.
        "live_url": "" if ctx["fixed_end"] else f"/ws/orgs/{org.slug}/live/",
    })
    return render(request, "analytics/dashboard.html", ctx)


def _has_logs(org: Organization) -> bool:
    """Whether the org ever logged a request (its dashboard shows how to send the first one until then)."""
    if clickhouse.enabled():
        from .clickhouse import rows

        return bool(rows.page(Selection(org), limit=1))
    return RequestLog.objects.filter(org=org).exists()


def _quickstart(request: HttpRequest) -> dict[str, str]:
    """The first-request snippets, pointed at this server as the browser reached it. The key is a
    placeholder: a key's secret is shown once, when it is created, and never again."""
    base = request.build_absolute_uri("/").rstrip("/")
    header = 'default_headers={"Helicone-Auth": "Bearer <your gateway API key>"},'
    return {
        "base_url": base,
        "openai": "\n".join([
            "from openai import OpenAI",
            "",
            "client = OpenAI(",
            '    api_key="<your OpenAI key>",',
            f'    base_url="{base}/oai/v1",',
            f"    {header}",
            ")",
            'reply = client.chat.completions.create(model="gpt-4o-mini",',
            '                                       messages=[{"role": "user", "content": "Hello"}])',
            "print(reply.choices[0].message.content)",
        ]),
        "anthropic": "\n".join([
            "from anthropic import Anthropic",
            "",
            "client = Anthropic(",
            '    api_key="<your Anthropic key>",',
            f'    base_url="{base}/anthropic",',
            f"    {header}",
            ")",
            'reply = client.messages.create(model="claude-3-5-haiku-latest", max_tokens=256,',
            '                               messages=[{"role": "user", "content": "Hello"}])',
            "print(reply.content[0].text)",
        ]),
    }


# --- Request explorer --------------------------------------------------------------------

EXPLORER_FIELDS = ("user_id", "session_id", "model", "provider", "status", "cache_hit", "request_name", "prompt_id")


def _explorer_filters(request: HttpRequest, start: datetime, end: datetime | None) -> tuple[dict, dict, str, list[str]]:
    params = request.GET
    filters: dict[str, Any] = {"created_after": start}
    if end is not None:
        filters["created_before"] = end
    errors = []
    for name in EXPLORER_FIELDS:
        value = params.get(name, "").strip()
        if not value:
            continue
        if name == "status":
            if value == "error":
                continue  # handled below: any failure
            try:
                filters[name] = int(value)
            except ValueError:
                errors.append("Status: a number, or 'error'.")
        elif name == "cache_hit":
            filters[name] = value == "true"
        else:
            filters[name] = value
    properties = {}
    key, value = params.get("prop_key", "").strip(), params.get("prop_value", "").strip()
    if key and value:
        properties[key] = value
    return filters, properties, params.get("q", "").strip(), errors


@org_member_required()
@with_range
def request_list(request: HttpRequest, org: Organization, membership: Membership, ctx: dict[str, Any]) -> HttpResponse:
    # The builder's "Add condition" (a GET form, so it works without JavaScript): one more `f` in the URL.
    added = saved_views.add_condition_redirect(request) if "add_field" in request.GET else None
    if isinstance(added, HttpResponse):
        return added
    # A range that ends now has no upper bound: the newest logs (and the live ones) stay in it.
    filters, properties, search, errors = _explorer_filters(request, ctx["start"],
                                                            ctx["end"] if ctx["fixed_end"] else None)
    if added:
        errors.append(added)
    try:
        conditions = parse_conditions(request.GET)
    except FilterError as exc:
        errors.append(str(exc))
        conditions = Conditions()
    sort = request.GET.get("sort") if request.GET.get("sort") in SORTS else "newest"
    try:
        page = max(int(request.GET.get("page", "1")), 1)
    except ValueError:
        page = 1
    try:
        qs = logs_for(org, filters, properties, search, conditions)
    except FilterError as exc:
        errors.append(str(exc))
        qs = RequestLog.objects.none()
    if request.GET.get("status") == "error":
        qs = qs.filter(metrics.ERROR_Q)
    if errors:
        qs = RequestLog.objects.none()
    order = SORTS[sort][0]
    column = order.lstrip("-")
    expression = F(column).desc(nulls_last=True) if order.startswith("-") else F(column).asc(nulls_last=True)
    ordering = [expression, "-id"] if column != "created_at" else [order, "-id"]
    # One row more than a page tells whether there is a next page: no COUNT(*) over the range.
    if clickhouse.enabled() and not errors:
        from .clickhouse import rows as clickhouse_rows

        selection = Selection(org, filters=filters, properties=properties, search=search, conditions=conditions)
        rows = clickhouse_rows.page(selection, order=order, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1,
                                    errors_only=request.GET.get("status") == "error")
    elif order.startswith("-") and column != "created_at":
        rows = _largest_first(qs, column, (page - 1) * PAGE_SIZE, PAGE_SIZE + 1)
    else:
        rows = list(_listed(qs.order_by(*ordering))[(page - 1) * PAGE_SIZE: page * PAGE_SIZE + 1])
    has_next = len(rows) > PAGE_SIZE
    query = request.GET.copy()
    query.pop("page", None)
    ctx.update({
        "org": org,
        "membership": membership,
        "rows": rows[:PAGE_SIZE],
        "page": page,
        "has_next": has_next,
        "query": query.urlencode(),
        "params": request.GET,
        "sort": sort,
        "sorts": [(key, label) for key, (_, label) in SORTS.items()],
        "errors": errors,
        "pickers": _pickers(org),
        "live": page == 1 and sort == "newest" and not ctx["fixed_end"],
        "live_filters": {name: request.GET.get(name, "") for name in EXPLORER_FIELDS}
                        | {"prop_key": request.GET.get("prop_key", ""), "prop_value": request.GET.get("prop_value", ""),
                           "q": search, "conditions": bool(conditions)},
        "live_url": f"/ws/orgs/{org.slug}/live/",
        **saved_views.explorer_context(request, org, membership, conditions),
    })
    return render(request, "analytics/requests.html", ctx, status=400 if errors else 200)


def _listed(qs):
    return qs.defer("request_body", "response_body", "request_headers", "prompt_variables")


def _largest_first(qs, column: str, offset: int, limit: int) -> list[RequestLog]:
    """A page of the logs sorted by `column` descending, logs without a value last. The logs with
    a value come first, in the order the (org, -column) index keeps them (DESC NULLS FIRST, the nulls
    filtered out), so slowest first over a week reads a page of the index rather than sorting the
    week; the logs without a value follow (counted only for a page beyond the last valued log)."""
    valued = qs.filter(**{f"{column}__isnull": False})
    rows = list(_listed(valued.order_by(F(column).desc(), "-id"))[offset:offset + limit])
    if len(rows) == limit:
        return rows
    skip = 0 if rows else max(offset - valued.count(), 0)
    unvalued = qs.filter(**{f"{column}__isnull": True}).order_by("-id")
    return rows + list(_listed(unvalued)[skip:skip + limit - len(rows)])


# --- Request detail ----------------------------------------------------------------------


def _maybe_json(text: str) -> Any:
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return None
    return None


def _text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif isinstance(part.get("refusal"), str):
                    parts.append(part["refusal"])
                elif part.get("type") in ("image_url", "image", "input_image"):
                    parts.append("[image]")
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    if content is None:
        return ""
    return json.dumps(content, indent=2)


def _arguments(value: Any) -> str:
    """Tool-call arguments as shown: OpenAI's JSON string or Anthropic's object, pretty-printed."""
    if isinstance(value, str):
        parsed = _maybe_json(value.strip())
        return json.dumps(parsed, indent=2, ensure_ascii=False) if parsed is not None else value
    return json.dumps(value, indent=2, ensure_ascii=False)


def _call(name: Any, arguments: Any, call_id: Any = None) -> dict[str, str]:
    return {"name": str(name or ""), "arguments": _arguments(arguments), "id": str(call_id or "")}


def _message(role: str, text: str = "", tool_calls: list | None = None, **extra: Any) -> dict[str, Any]:
    return {"role": role, "text": text.strip(), "tool_calls": tool_calls or [], **extra}


def _openai_calls(message: dict) -> list[dict[str, str]]:
    calls = []
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            calls.append(_call(function.get("name"), function.get("arguments", ""), call.get("id")))
    if isinstance(message.get("function_call"), dict):  # the legacy single function call
        calls.append(_call(message["function_call"].get("name"), message["function_call"].get("arguments", "")))
    return calls


def _anthropic_turn(role: str, content: Any, **extra: Any) -> list[dict[str, Any]]:
    """One Anthropic message: its text and tool_use blocks, and each tool_result block as a turn of its own."""
    if not isinstance(content, list):
        return [_message(role, _text_of(content), **extra)]
    calls, results = [], []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") in ("tool_use", "server_tool_use"):
            calls.append(_call(block.get("name"), block.get("input", {}), block.get("id")))
        elif block.get("type") == "tool_result":
            results.append(_message("tool", _text_of(block.get("content")), is_error=bool(block.get("is_error")),
                                    tool_call_id=str(block.get("tool_use_id", ""))))
    text = _text_of([b for b in content if not (isinstance(b, dict) and b.get("type") == "tool_result")])
    turns = results
    if text or calls:
        turns = [*results, _message(role, text, calls, **extra)]
    return turns


def _input_item(item: Any) -> list[dict[str, Any]]:
    """A request message (chat or Anthropic) or a Responses API input item."""
    if isinstance(item, str):
        return [_message("user", item)]
    if not isinstance(item, dict):
        return []
    kind = item.get("type")
    if kind == "function_call":
        return [_message("assistant", "", [_call(item.get("name"), item.get("arguments", ""), item.get("call_id"))])]
    if kind == "function_call_output":
        output = item.get("output")
        return [_message("tool", output if isinstance(output, str) else _text_of(output),
                         tool_call_id=str(item.get("call_id", "")))]
    if kind not in (None, "message"):
        return []  # reasoning and other items the model keeps for itself
    role = str(item.get("role", "user"))
    if role == "tool":
        return [_message("tool", _text_of(item.get("content")), tool_call_id=str(item.get("tool_call_id", "")))]
    content = item.get("content")
    if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") in ("tool_use", "tool_result")
                                         for b in content):
        return _anthropic_turn(role, content)
    return [_message(role, _text_of(content), _openai_calls(item))]


def _responses_output(output: list) -> dict[str, Any] | None:
    """The Responses API's `output` items as one answer: message text, function calls."""
    texts, calls = [], []
    for item in output:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            texts.append(_text_of(item.get("content")))
        elif item.get("type") == "function_call":
            calls.append(_call(item.get("name"), item.get("arguments", ""), item.get("call_id")))
    if not texts and not calls:
        return None
    return _message("assistant", "\n".join(texts), calls, answer=True)


def conversation(request_json: Any, response_json: Any) -> list[dict[str, Any]]:
    """The messages of a chat request (OpenAI, Anthropic or Responses API shapes) followed by the
    answer, with tool calls (name and arguments) and tool results, for the detail page."""
    messages: list[dict[str, Any]] = []
    if isinstance(request_json, dict):
        if request_json.get("system"):
            messages.append(_message("system", _text_of(request_json["system"])))
        if isinstance(request_json.get("instructions"), str):
            messages.append(_message("system", request_json["instructions"]))
        source = request_json.get("messages")
        if source is None:
            source = request_json.get("input")
            if isinstance(source, str):
                source = [source]
        for item in source if isinstance(source, list) else ():
            messages.extend(_input_item(item))
    if isinstance(response_json, dict):
        for choice in response_json.get("choices") or []:
            if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
                message = choice["message"]
                messages.append(_message("assistant", _text_of(message.get("content")), _openai_calls(message),
                                         answer=True))
            elif isinstance(choice, dict) and isinstance(choice.get("text"), str):
                messages.append(_message("assistant", choice["text"], answer=True))
        if response_json.get("type") == "message" and isinstance(response_json.get("content"), list):
            messages.extend(_anthropic_turn("assistant", response_json["content"], answer=True))
        if isinstance(response_json.get("output"), list):
            answer = _responses_output(response_json["output"])
            if answer is not None:
                messages.append(answer)
    return messages


def _pretty(text: str) -> str:
    parsed = _maybe_json(text)
    return json.dumps(parsed, indent=2, ensure_ascii=False) if parsed is not None else text


def cost_note(log: RequestLog) -> str:
    """Why a log has no cost. "Unpriced" means usage whose model has no known price; a call with no
    token usage (most failed calls) has nothing to price, whatever its model costs."""
    if log.cost_usd is not None:
        return ""
    if log.prompt_tokens is None and log.completion_tokens is None:
        failed = rollups.is_error(log.status)
        return "no token usage to price" + (" (the call failed)" if failed else "")
    pricing.refresh_overrides()
    if pricing.cost_usd(log.provider, log.model or log.requested_model, log.prompt_tokens, log.completion_tokens,
                        log.cached_tokens) is not None:
        return "not priced when logged (its model has a price now)"
    return "unpriced (no known price for this model)"


def _request_context(request: HttpRequest, org: Organization, membership: Membership, log: RequestLog) -> dict:
    """What the request page and the request panel (over a list, beside a session) show of one log."""
    request_json = None if log.request_omitted else _maybe_json(log.request_body)
    response_json = None if log.response_omitted else _maybe_json(log.response_body)
    feedback = Feedback.objects.filter(request=log).first()
    total = log.latency_ms or 0
    ttft = log.ttft_ms if log.ttft_ms is not None and total else None
    return {
        "org": org,
        "membership": membership,
        "log": log,
        "conversation": conversation(request_json, response_json),
        "request_pretty": _pretty(log.request_body),
        "response_pretty": _pretty(log.response_body),
        "feedback": feedback,
        "scores": scores_of(log),
        "ttft_percent": None if ttft is None else min(100 * ttft / total, 100),
        "headers_pretty": json.dumps(log.request_headers, indent=2, ensure_ascii=False),
        "is_error": rollups.is_error(log.status),
        "cost_note": cost_note(log),
        "uncached_prompt_tokens": None if log.prompt_tokens is None else log.prompt_tokens - (log.cached_tokens or 0),
        "can_edit": membership.has_role(Role.MEMBER),
        "replay_curl": replay_curl(log, request.build_absolute_uri("/").rstrip("/")),
        "return_to": request.path,
    }


@org_member_required()
def request_detail(request: HttpRequest, org: Organization, membership: Membership, log_id) -> HttpResponse:
    ctx = _request_context(request, org, membership, get_log(org, log_id))
    if request.GET.get("panel") == "1":  # the fragment the request panel loads over a list
        return render(request, "analytics/request_panel.html", {**ctx, "panel": True})
    return render(request, "analytics/request_detail.html", ctx)


# --- Sessions ------------------------------------------------------------------------------


@org_member_required()
@with_range
def session_list(request: HttpRequest, org: Organization, membership: Membership, ctx: dict[str, Any]) -> HttpResponse:
    search = request.GET.get("session", "").strip()
    ctx.update({"org": org, "membership": membership, "search": search})
    try:
        groups = _people(request, org, ctx, "session", search, default_sort="last")
    except _BadParameter as exc:
        ctx.update({"sessions": [], "error": str(exc)})
        return render(request, "analytics/sessions.html", ctx, status=400)
    if clickhouse.enabled():
        from .clickhouse import reads

        # Only from the first request of the sessions shown (the newest: a day, not the month).
        since = min((group["first"] for group in groups if group["first"] is not None), default=ctx["start"])
        facts = reads.session_facts(org.pk, max(since, ctx["start"]), [group["key"] for group in groups])
        names = {session: name for session, (name, _) in facts.items() if name}
        users = {session: count for session, (_, count) in facts.items()}
    else:
        names = dict(logs_for(org, {"created_after": ctx["start"]})
                     .filter(session_id__in=[group["key"] for group in groups]).exclude(session_name="")
                     .values("session_id").annotate(name=Max("session_name")).values_list("session_id", "name"))
        users = dict(logs_for(org, {"created_after": ctx["start"]})
                     .filter(session_id__in=[group["key"] for group in groups]).exclude(user_id="")
                     .values("session_id").annotate(n=Count("user_id", distinct=True))
                     .values_list("session_id", "n"))
    sessions = [{"session_id": group["key"], "requests": group["count"], "cost": group["cost"],
                 "errors": group["errors"], "first": group["first"], "last": group["last"],
                 "tokens": group["total_tokens"], "name": names.get(group["key"], ""),
                 "users": users.get(group["key"], 0),
                 "duration": (group["last"] - group["first"]).total_seconds()} for group in groups]
    for session in sessions:
        try:
            session["href"] = reverse("session_detail", args=[org.slug, session["session_id"]])
        except NoReverseMatch:  # an id the path cannot carry (a newline, from the log API): its requests
            session["href"] = (reverse("request_list", args=[org.slug]) + "?"
                               + urlencode({"session_id": session["session_id"], **ctx["range_params"]}))
    ctx["sessions"] = sessions
    return render(request, "analytics/sessions.html", ctx)


# The users and sessions lists' sorts (?sort=) -> rollup_reads orders.
PEOPLE_SORTS = {"requests": "-count", "cost": "-cost_usd", "errors": "-errors", "last": "-last"}
PEOPLE_PAGE_SIZE = 50


class _BadParameter(ValueError):
    """A query parameter a list cannot read: a 400 page that names it."""


def _people(request: HttpRequest, org: Organization, ctx: dict[str, Any], dim: str, search: str,
            default_sort: str) -> list[dict[str, Any]]:
    """One page of the users or sessions list (every value reachable page by page, none capped),
    from the rollups or ClickHouse; from the raw rows under the time budget while the org's rollups
    are not built (a session search, which matches names too, needs the sessions' all-time rows). Adds the
    paging and sorting links to ctx, which keep the range, the search and the sort."""
    sort = request.GET.get("sort") or default_sort
    if sort not in PEOPLE_SORTS:
        raise _BadParameter(f"sort must be one of {', '.join(PEOPLE_SORTS)}, not {sort[:40]!r}")
    raw_page = request.GET.get("page", "1")
    if not (raw_page.isascii() and raw_page.isdigit()) or not 1 <= int(raw_page) <= 1_000_000:
        raise _BadParameter(f"page must be a whole number from 1, not {raw_page[:40]!r}")
    page = int(raw_page)
    offset = (page - 1) * PEOPLE_PAGE_SIZE
    selection = Selection(org, ctx["start"], ctx["end"])
    order = PEOPLE_SORTS[sort]
    names = dim == "session" and bool(search)
    found = rollup_reads.people_page(selection, dim, order_by=order, offset=offset, limit=PEOPLE_PAGE_SIZE,
                                     contains=search, names=names)
    notice = ""
    if found is None:
        try:
            with metrics.budget(getattr(settings, "ANALYTICS_RAW_BUDGET_SECONDS", None)):
                found = rollup_reads.raw_people_page(selection, dim, order_by=order, offset=offset,
                                                     limit=PEOPLE_PAGE_SIZE, contains=search, names=names)
        except metrics.TooSlow:
            found = ([], False)
            notice = ("This takes too long to read from the raw logs" + (" (a search reads them all)" if names else
                      ": the organization's rollups are not built yet") + ". Choose a shorter range.")
    groups, has_next = found
    kept = {**ctx["range_params"], **({"session" if dim == "session" else "user": search} if search else {})}
    ctx.update({"page": page, "has_next": has_next, "sort": sort, "notice": notice,
                "first_row": offset + 1, "last_row": offset + len(groups),
                "sort_query": urlencode(kept), "page_query": urlencode({**kept, "sort": sort})})
    return groups


def session_tree(logs: list[RequestLog]) -> list[dict]:
    """Requests nested by `Helicone-Session-Path` ("/plan/step" under "/plan"), as a flat list with depths."""
    root: dict = {"children": {}, "logs": []}
    for log in logs:
        node = root
        for part in [p for p in (log.session_path or "/").split("/") if p]:
            node = node["children"].setdefault(part, {"children": {}, "logs": []})
        node["logs"].append(log)
    flat: list[dict] = []

    def walk(node: dict, name: str, path: str, depth: int) -> None:
        if depth >= 0:
            flat.append({"name": name, "path": path, "depth": depth, "logs": node["logs"]})
        else:
            for log in node["logs"]:
                flat.append({"name": "/", "path": "/", "depth": 0, "logs": [log]})
        for child_name, child in node["children"].items():
            walk(child, child_name, f"{path.rstrip('/')}/{child_name}", depth + 1)

    walk(root, "", "", -1)
    # Root-level requests were added one per row; fold them into one "/" row.
    root_rows = [row for row in flat if row["path"] == "/"]
    if len(root_rows) > 1:
        first = root_rows[0]
        first["logs"] = [log for row in root_rows for log in row["logs"]]
        flat = [row for row in flat if row["path"] != "/" or row is first]
    return flat


@org_member_required()
def session_detail(request: HttpRequest, org: Organization, membership: Membership, session_id: str) -> HttpResponse:
    if clickhouse.enabled():
        from .clickhouse import rows

        logs = rows.session_logs(org, session_id, limit=1000)
    else:
        logs = list(logs_for(org, {"session_id": session_id}).order_by("created_at")
                    .defer("request_body", "response_body", "request_headers")[:1000])
    if not logs:
        raise Http404("No such session")
    start = logs[0].created_at
    end = max(log.created_at + timedelta(milliseconds=log.latency_ms or 0) for log in logs)
    span = max((end - start).total_seconds(), 0.001)
    timeline = [{
        "log": log,
        "left": 100 * (log.created_at - start).total_seconds() / span,
        "width": max(100 * (log.latency_ms or 0) / 1000 / span, 0.4),
        "offset_s": (log.created_at - start).total_seconds(),
    } for log in logs]
    for item in timeline:  # the trace shows each request on its own lane of the session's time
        item["log"].lane_left, item["log"].lane_width = item["left"], min(item["width"], 100 - item["left"])
        item["log"].offset_s = item["offset_s"]
    chosen = request.GET.get("request", "")
    if chosen:
        try:
            chosen = str(uuid.UUID(chosen))
        except ValueError:
            return HttpResponse("request: not a request id", status=400, content_type="text/plain; charset=utf-8")
        if chosen not in {str(log.id) for log in logs}:
            raise Http404("No request with this id in this session")
    totals = {
        "requests": len(logs),
        "cost": sum(float(log.cost_usd) for log in logs if log.cost_usd is not None),
        "tokens": sum(log.total_tokens or 0 for log in logs),
        "errors": sum(1 for log in logs if rollups.is_error(log.status)),
        "duration": span,
    }
    ctx = {"org": org, "membership": membership, "session_id": session_id,
           "session_name": next((log.session_name for log in logs if log.session_name), ""),
           "tree": session_tree(logs), "timeline": timeline, "totals": totals, "truncated": len(logs) == 1000}
    # The selected request (the first one until a trace node is picked) is shown beside the trace.
    selected = get_log(org, chosen or logs[0].id)
    ctx.update({**_request_context(request, org, membership, selected), **ctx, "panel": True, "on_session": True,
                "return_to": f"{request.path}?request={selected.id}"})
    return render(request, "analytics/session_detail.html", ctx)


# --- Users -----------------------------------------------------------------------------------


@org_member_required()
@with_range
def user_list(request: HttpRequest, org: Organization, membership: Membership, ctx: dict[str, Any]) -> HttpResponse:
    search = request.GET.get("user", "").strip()
    ctx.update({"org": org, "membership": membership, "search": search,
                "can_erase": membership.has_role(Role.ADMIN)})
    try:
        groups = _people(request, org, ctx, "user", search, default_sort="requests")
    except _BadParameter as exc:
        ctx.update({"users": [], "error": str(exc)})
        return render(request, "analytics/users.html", ctx, status=400)
    users = [{"user_id": group["key"], "requests": group["count"], "cost": group["cost"],
              "errors": group["errors"], "first": group["first"], "last": group["last"],
              "tokens": group["total_tokens"]} for group in groups]
    for user in users:
        user["query"] = urlencode({"user_id": user["user_id"], **ctx["range_params"]})
        user["detail_query"] = urlencode({"id": user["user_id"], **ctx["range_params"]})
        user["erase_query"] = urlencode({"user_id": user["user_id"]})
    ctx["users"] = users
    return render(request, "analytics/users.html", ctx)


# The user page's properties come from their newest requests in the range, not a scan of it.
PROPERTY_SAMPLE = 2000


@org_member_required()
@with_range
def user_detail(request: HttpRequest, org: Organization, membership: Membership, ctx: dict[str, Any]) -> HttpResponse:
    """One user: requests, cost and latency over the range, first and last seen (ever), top models,
    the properties of their latest requests. The id travels as ?id= so that any id (slashes, "..",
    spaces, a newline) has a URL."""
    user_id = request.GET.get("id", "")
    ctx.update({"org": org, "membership": membership, "user_id": user_id})
    if not user_id.strip():
        ctx["error"] = "id: which user? This page takes the user id as ?id=<user id>."
        return render(request, "analytics/user_detail.html", ctx, status=400)
    seen = rollup_reads.user_seen(org.pk, user_id)
    if seen is None:  # no log of this org names them: another org's user is as unknown
        raise Http404("No such user")
    selection = Selection(org, ctx["start"], ctx["end"], filters={"user_id": user_id})
    interval = metrics.pick_interval(ctx["end"] - ctx["start"])
    latency = ("latency_p50_ms", "latency_p95_ms")
    notice = ""
    try:
        totals = metrics.summary(selection, percentiles=latency)
        series = metrics.timeseries(selection, interval, ctx["start"], ctx["end"], fill=True, percentiles=latency)
    except metrics.TooSlow:
        notice = "This range takes too long to read for one user. Choose a shorter range."
        totals = rollup_reads.finish(Measures())
        series = metrics.timeseries(Selection(org, ctx["end"], ctx["end"]), interval, ctx["start"], ctx["end"],
                                    fill=True)
    # Top models and properties from the user's latest requests in the range (the (org, user,
    # created_at) index): no rollup keeps a user's models, and a heavy user's month of raw rows
    # takes seconds. Exact when the range holds no more than the sample.
    if clickhouse.enabled():
        from .clickhouse import rows

        recent = rows.models_and_properties(selection, PROPERTY_SAMPLE)
    else:
        recent = list(selection.qs.order_by("-created_at").values_list("model", "properties")[:PROPERTY_SAMPLE])
    values: dict[str, dict[str, int]] = {}
    model_counts: dict[str, int] = {}
    for model, log_properties in recent:
        model_counts[model] = model_counts.get(model, 0) + 1
        for key, value in (log_properties or {}).items():
            counted = values.setdefault(str(key), {})
            counted[str(value)] = counted.get(str(value), 0) + 1
    models = [{"key": key, "count": count}
              for key, count in sorted(model_counts.items(), key=lambda item: (-item[1], item[0]))[:8]]
    properties = [{"key": key, "values": sorted(counted.items(), key=lambda item: (-item[1], item[0]))[:5],
                   "more": max(len(counted) - 5, 0)} for key, counted in sorted(values.items())]
    explore = reverse("request_list", args=[org.slug])
    top_models = charts.bars(
        [(group["key"] or "(unknown)", group["count"]) for group in models],
        links=[explore + "?" + urlencode({"user_id": user_id, "model": group["key"], **ctx["range_params"]})
               if group["key"] else "" for group in models])
    times = [bucket["time"] for bucket in series]
    step = metrics.INTERVALS[interval][1]
    ctx.update({
        "notice": notice, "totals": totals, "first_seen": seen[0], "last_seen": seen[1],
        "active_for": seen[1] - seen[0], "interval": interval, "properties": properties,
        "sampled": len(recent),
        "models": top_models,
        "explorer_query": urlencode({"user_id": user_id, **ctx["range_params"]}),
        "erase_query": urlencode({"user_id": user_id}), "can_erase": membership.has_role(Role.ADMIN),
        # Charts as on the dashboard: a click opens the explorer at the bucket for this user, a drag
        # zooms this page (the ?id= stays in the URL).
        "requests_chart": charts.figure(
            "columns", times, [("successful", [b["count"] - b["errors"] for b in series]),
                               ("errors", [b["errors"] for b in series])],
            step=step, label="Requests over time", colors=["#4f46e5", "#ef4444"], explore=explore,
            explore_params=[{"user_id": user_id}, {"user_id": user_id, "status": "error"}], zoom=True),
        "cost_chart": charts.figure("lines", times, [("cost", [b["cost_usd"] for b in series])], charts.usd,
                                    step=step, area=True, label="Cost over time", explore=explore,
                                    explore_params=[{"user_id": user_id, "sort": "costliest"}], zoom=True),
        "latency_chart": charts.figure(
            "lines", times, [("P50", [b["latency_p50_ms"] for b in series]),
                             ("P95", [b["latency_p95_ms"] for b in series])], charts.ms,
            step=step, label="Latency percentiles", explore=explore,
            explore_params=[{"user_id": user_id, "sort": "slowest"}] * 2, zoom=True),
    })
    return render(request, "analytics/user_detail.html", ctx)

