"""The proxy hot path, as a raw ASGI handler.

One request: authenticate (cached), parse the Helicone headers, read the body,
check rate limits and the cache when asked to, forward with the shared client
(with retries and fallbacks when asked to), pass the response (or the stream,
chunk by chunk) back with `Helicone-Id`, and enqueue one log record. No
database query and no thread hop in steady state; a request that uses none of
the optional features costs nothing for them.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings

from analytics.logqueue import enqueue
from formats.headers import HeaderError, parse_options
from formats.ids import log_id
from formats.usage import StreamTee, Usage, usage_from_body
from orgs.models import KEY_PREFIX

from . import cache, ratelimit, retry, semantic
from .auth import AuthUnavailable, authenticate
from .exchange import Exchange
from .metrics import RATE_LIMIT_REFUSALS, SEMANTIC_LOOKUPS, observe_request
from .prompts import PromptError, PromptUnavailable, apply_prompt
from .providers import RouteError, check_target, resolve_route
from .upstream import UpstreamError, UpstreamResponse, UpstreamTimeout

# Never forwarded upstream: hop-by-hop headers, and ones the client library sets anew.
_REQUEST_DROP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
     "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding", "expect"}
)
_RESPONSE_DROP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
     b"trailers", b"transfer-encoding", b"upgrade", b"content-length"}
)
# Credentials: forwarded, but never written to a log.
_SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "helicone-auth", "cookie", "proxy-authorization",
     "x-goog-api-key"}
)
# Providers whose OpenAI-style streams report usage when asked with stream_options.
_USAGE_ON_REQUEST = frozenset(
    {"openai", "azure", "deepseek", "together", "fireworks", "xai", "openrouter", "groq", "gemini"}
)
# Provider credentials a key of this gateway must never travel in (names as users write them).
_CREDENTIAL_HEADERS = {"authorization": "Authorization", "x-api-key": "x-api-key", "api-key": "api-key",
                       "x-goog-api-key": "x-goog-api-key"}
_JSON_ERROR = [(b"content-type", b"application/json")]
_CACHE_MISS = ((b"helicone-cache", b"MISS"), (b"helicone-cache-hit", b"false"))


def loads(data: bytes) -> Any:
    """Parse JSON fast; the standard parser only for what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data, parse_constant=_not_json)
        except RecursionError:
            raise ValueError("nested too deeply") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class ClientGone(Exception):
    pass


class BodyTooLarge(Exception):
    pass


def _headers(scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = headers[name] + ", " + value if name in headers else value
    return headers


async def _respond_error(send, ex: Exchange, status: int, message: str, error_type: str, extra=()) -> None:
    body = orjson.dumps({"error": {"message": message, "type": error_type}})
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*_JSON_ERROR, (b"content-length", str(len(body)).encode()), *_id_headers(ex),
                    *ex.extra_headers, *_fallback_header(ex), *extra],
    })
    ex.complete = True
    ex.status = status
    ex.error = message
    ex.response_body = body.decode()
    _log(ex)
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive, ex: Exchange) -> bytes:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    declared = ex.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def handle(scope, receive, send, prefix: str) -> None:
    ex = Exchange(
        id=log_id(),
        started=time.perf_counter(),
        created_at=time.time(),
        method=scope["method"],
        headers=_headers(scope),
    )
    try:
        await _handle(scope, receive, send, prefix, ex)
    finally:
        observe_request(ex.provider or "unknown", ex.status, time.perf_counter() - ex.started,
                        bool(ex.cache_key) and ex.opts.cache_read, ex.cache_hit)


def _gateway_key_header(headers: dict[str, str]) -> str | None:
    """The provider credential header that holds a key of this gateway, if any."""
    for name, shown in _CREDENTIAL_HEADERS.items():
        value = headers.get(name)
        if value and KEY_PREFIX in value:
            return shown
    return None


def _gateway_key_message(header: str) -> str:
    return (f"The {header} header holds a key of this gateway ({KEY_PREFIX}…), which is never sent to a "
            f"provider: send it as 'Helicone-Auth: Bearer <key>' and the provider's own key in {header}")


async def _handle(scope, receive, send, prefix: str, ex: Exchange) -> None:
    # 0. A gateway key where the provider's key belongs (an SDK given the wrong key, Helicone's
    # logging helper pointed at a proxy path) would be handed to the provider: refused first.
    misplaced = _gateway_key_header(ex.headers)
    if misplaced is not None:
        return await _respond_error(send, ex, 400, _gateway_key_message(misplaced), "helicone_request_error")

    # 1. Authenticate: nothing is logged or forwarded for an unknown caller.
    auth = ex.headers.get("helicone-auth", "")
    scheme, _, token = auth.strip().partition(" ")
    if not auth:
        return await _respond_error(send, ex, 401, "Missing Helicone-Auth header: send 'Helicone-Auth: Bearer <key>'",
                                    "helicone_auth_error")
    if scheme.lower() != "bearer" or not token.strip():
        return await _respond_error(send, ex, 401, "Malformed Helicone-Auth header: expected 'Bearer <key>'",
                                    "helicone_auth_error")
    try:
        key = await authenticate(token.strip())
    except AuthUnavailable:
        return await _respond_error(send, ex, 503, "API keys cannot be checked right now (database unavailable)",
                                    "helicone_unavailable", [(b"retry-after", b"5")])
    if key is None:
        return await _respond_error(send, ex, 401, "Invalid or revoked Helicone API key", "helicone_auth_error")
    if "proxy" not in key.scopes:
        return await _respond_error(send, ex, 403, "This Helicone API key lacks the 'proxy' scope",
                                    "helicone_auth_error")
    if key.suspended is not None:
        return await _respond_error(send, ex, 403, f"Organization {key.org_slug} is suspended: {key.suspended}. "
                                    "Its API keys are refused until an operator reactivates it.",
                                    "helicone_org_suspended")
    if key.monthly_request_limit is not None:
        month = await ratelimit.check_monthly(key.org_id, key.monthly_request_limit)
        if not month.allowed and month.used is None:
            return await _respond_error(send, ex, 503, "The monthly request limit cannot be checked right now",
                                        "helicone_rate_limit_unavailable", [(b"retry-after", b"1")])
        if not month.allowed:
            return await _respond_error(
                send, ex, 429, f"Monthly request limit reached: the plan of organization {key.org_slug} allows "
                               f"{key.monthly_request_limit} requests per calendar month (UTC), until "
                               f"{month.resets_at:%Y-%m-%d}. Ask the operator for a higher limit.",
                "helicone_monthly_limit_exceeded",
                [(b"retry-after", str(max(1, int(month.resets_at.timestamp() - time.time()))).encode())])
    ex.org_id, ex.api_key_id = key.org_id, key.key_id
    org_policies = key.rate_limits

    # 2. From here on every outcome is logged.
    try:
        try:
            ex.opts = parse_options(ex.headers)
            if ex.opts.request_id:
                ex.id = ex.opts.request_id
            route = resolve_route(prefix, scope.get("raw_path", scope["path"].encode()).decode("latin-1"), ex.opts)
            ex.provider = route.provider
            ex.path = route.path
            ex.route_base = route.base_url
            if route.client_chosen:
                await check_target(route.base_url, "Helicone-Target-Url" if prefix == "gateway"
                                   else "Helicone-OpenAI-Api-Base")
            query = scope.get("query_string", b"")
            ex.target_url = route.url + ("?" + query.decode("latin-1") if query else "")
            ex.body = await _read_body(receive, ex)
            strip_usage = _prepare_body(ex)
            if ex.opts.prompt_id and await _apply_prompt(ex):
                strip_usage = _prepare_body(ex)
            if ex.opts.fallbacks:
                await _check_fallbacks(ex)
            if ex.opts.cache_semantic:
                ex.semantic = semantic.plan(ex, _user_id(ex.opts, ex.payload), key.semantic_org_scope)
        except HeaderError as exc:
            return await _respond_error(send, ex, 400, f"Invalid {exc.header} header: {exc.message}",
                                        "helicone_header_error")
        except RouteError as exc:
            return await _respond_error(send, ex, exc.status, exc.message, exc.error_type)
        except BodyTooLarge:
            ex.body = b""
            return await _respond_error(send, ex, 413, f"Request body exceeds the gateway limit of "
                                        f"{settings.GATEWAY_MAX_BODY_BYTES} bytes", "helicone_request_error")
        except (_BadBody, PromptError) as exc:
            return await _respond_error(send, ex, 400, str(exc), "helicone_request_error")
        except PromptUnavailable:
            return await _respond_error(send, ex, 503, "The prompt cannot be read right now (database unavailable)",
                                        "helicone_unavailable", [(b"retry-after", b"5")])

        # 3. Rate limits, then the cache (a hit never calls upstream).
        opts = ex.opts
        if opts.rate_limits or org_policies:
            decision = await ratelimit.check(ex.org_id, opts.rate_limits, org_policies, opts.user_id,
                                             opts.properties)
            ex.extra_headers += tuple(decision.headers())
            if not decision.allowed:
                if decision.unavailable:
                    return await _respond_error(send, ex, 503, "Rate limits cannot be checked right now",
                                                "helicone_rate_limit_unavailable", [(b"retry-after", b"1")])
                RATE_LIMIT_REFUSALS.inc()
                shown = decision.blocked.policy
                return await _respond_error(
                    send, ex, 429, f"Rate limit exceeded: policy {shown.text} allows {shown.quota} "
                                   f"{shown.unit}{'s' if shown.unit != 'cents' else ''} per {shown.window}s",
                    "helicone_rate_limit_exceeded")
            ex.rate_charges = decision.charges()
        if opts.cache_read or opts.cache_write:
            ex.cache_key = cache.cache_key(ex.org_id, opts, ex.method, ex.target_url, ex.body, ex.payload)
            if opts.cache_read:
                plan = ex.semantic
                floor = _semantic_floor(opts, key.semantic_floor) if plan else 0.0
                hit, ex.cache_free, found = await cache.lookup(ex.cache_key, opts,
                                                               semantic.prefetch(plan, floor) if plan else ())
                if hit is not None:
                    return await _serve_cached(send, ex, hit)
                if plan is not None:
                    match = await _semantic_lookup(ex, plan, found, floor)
                    if match is not None:
                        return await _serve_cached(send, ex, match.response, "semantic")
            ex.extra_headers += _CACHE_MISS

        # 4. Forward.
        await _forward(send, receive, ex, strip_usage)
    except (ClientGone, asyncio.CancelledError):
        # A client that leaves after it was sent a stream's final event (the OpenAI SDK closes
        # at `data: [DONE]`) had the whole answer: that stream is complete, not cancelled.
        if not ex.complete:
            ex.cancelled = True
            ex.error = ex.error or "client disconnected"
    finally:
        if ex.watcher is not None:
            ex.watcher.cancel()
        if (ex.rate_charges or ex.cache_key) and ex.complete and not ex.cancelled and not ex.cache_hit:
            _after_response(ex)
        _log(ex)


def _semantic_floor(opts, org_floor: float) -> float:
    """The lowest similarity a candidate needs: the org's floor, which a request may only raise; in
    shadow mode SHADOW_FLOOR, so the log shows what lower thresholds would have served."""
    if opts.cache_semantic == "shadow":
        return semantic.SHADOW_FLOOR
    return max(org_floor, opts.cache_semantic_threshold or 0.0)


async def _semantic_lookup(ex: Exchange, plan: semantic.Plan, found: dict, floor: float
                           ) -> semantic.Match | None:
    """After an exact miss: the semantic match to serve, or None. In shadow mode nothing is served
    but the candidate found is logged."""
    shadow = ex.opts.cache_semantic == "shadow"
    match = await semantic.find(plan, found, floor)
    if match is None:
        SEMANTIC_LOOKUPS.labels("miss").inc()
        return None
    ex.similarity = match.similarity
    ex.source_request_id = match.response.source_id or match.entry.source_request_id
    if shadow:
        ex.cache_match = "shadow"
        SEMANTIC_LOOKUPS.labels("shadow").inc()
        return None
    semantic.served(match)
    SEMANTIC_LOOKUPS.labels("hit").inc()
    return match


def _log(ex: Exchange) -> None:
    """Hand the request's log record over, once. Every answer calls it before its last byte is
    sent: the record is then in the journal on disk, so a process killed right after answering
    loses no log (issue #16). A caller refused before authentication has no org and no log."""
    if not ex.logged and ex.org_id is not None:
        ex.logged = True
        enqueue(_record(ex))


def _after_response(ex: Exchange) -> None:
    """Charge token and cents rate limits, and store a cacheable response (both in the background)."""
    if ex.rate_charges:
        usage = ex.usage
        tokens = (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
        cents: Decimal | int = 0
        if any(c.policy.unit == "cents" for c in ex.rate_charges):
            from analytics.pricing import cost_usd

            cost = cost_usd(ex.provider, _served_model(ex), usage.prompt_tokens, usage.completion_tokens,
                            usage.cached_tokens, usage.cache_write_tokens)
            cents = cost * 100 if cost is not None else 0  # a Decimal: charged exactly, in micro-cents
        ratelimit.charge(ex.rate_charges, tokens, cents)
    if ex.cache_key and ex.opts.cache_write and 200 <= ex.status < 300 and not ex.error:
        if ex.streamed and ex.stream_out is None:
            return  # too large to keep
        usage = ex.usage
        entry = cache.CachedResponse(
            status=ex.status, headers=ex.cache_headers, body=b"" if ex.streamed else ex.response_body,
            chunks=ex.stream_out if ex.streamed else None, response_type=ex.response_type,
            usage=(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_write_tokens),
            model=_served_model(ex), log_body=ex.response_body if ex.streamed else None, source_id=ex.id,
        )
        if cache.store(ex.cache_key, ex.opts, entry, ex.cache_free) and ex.semantic is not None:
            semantic.remember(ex.semantic, ex)


async def _serve_cached(send, ex: Exchange, hit: cache.CachedResponse, match: str = "exact") -> None:
    """Answer from the cache, a stream replayed event by event as it was first sent."""
    ex.cache_hit = True
    ex.cache_match = match
    ex.status = hit.status
    ex.response_type = hit.response_type
    ex.usage = Usage(*hit.usage)
    ex.model = hit.model
    headers = [*hit.headers, *_id_headers(ex), *ex.extra_headers,
               (b"helicone-cache", b"HIT"), (b"helicone-cache-hit", b"true"),
               (b"helicone-cache-bucket-idx", str(hit.bucket_index).encode()),
               (b"helicone-cache-match", match.encode())]
    if match == "semantic":
        headers.append((b"helicone-cache-similarity", f"{ex.similarity:.3f}".encode()))
    else:
        ex.source_request_id = hit.source_id
    if ex.source_request_id:
        headers.append((b"helicone-cache-source-id", ex.source_request_id.encode()))
    if hit.chunks is None:
        headers.append((b"content-length", str(len(hit.body)).encode()))
        await send({"type": "http.response.start", "status": hit.status, "headers": headers})
        ex.response_body = hit.body
        ex.complete = True
        _log(ex)
        await send({"type": "http.response.body", "body": hit.body})
    else:
        ex.streamed = True
        ex.response_body = hit.log_body
        await send({"type": "http.response.start", "status": hit.status, "headers": headers})
        last = len(hit.chunks) - 1
        for index, chunk in enumerate(hit.chunks):
            if ex.ttft_ms is None:
                ex.ttft_ms = (time.perf_counter() - ex.started) * 1000
            if index == last:  # it carries the final event
                ex.complete = True
                _log(ex)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        ex.complete = True
        _log(ex)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _check_fallbacks(ex: Exchange) -> None:
    """Refuse fallbacks that could not be sent, before anything goes upstream."""
    header = ex.opts.fallback_header
    for fallback in ex.opts.fallbacks:
        if fallback.body_override and not isinstance(ex.payload, dict):
            raise HeaderError(header, "body overrides need a JSON object request body")
        if fallback.target_url:
            await check_target(fallback.target_url, header)
        for name, value in fallback.headers:
            shown = _CREDENTIAL_HEADERS.get(name.lower())
            if shown and KEY_PREFIX in value:
                raise HeaderError(header, _gateway_key_message(shown))


def _stored_headers(headers: dict[str, str]) -> dict[str, str]:
    """The request headers as logged: credentials replaced, including those inside Helicone-Fallbacks."""
    # `X_Api_Key` too: a server that reads `_` as `-` (CGI/WSGI style) takes it for the key.
    stored = {k: ("[redacted]" if k.replace("_", "-") in _SECRET_HEADERS else v) for k, v in headers.items()}
    if "helicone-fallbacks" in stored:
        stored["helicone-fallbacks"] = _redact_fallbacks(stored["helicone-fallbacks"])
    return stored


def _redact_fallbacks(value: str) -> str:
    # Fallback headers carry the other provider's credentials: no value of them is kept.
    try:
        items = json.loads(value)
    except ValueError:
        return "[redacted: not valid JSON]"
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("headers"), dict):
                item["headers"] = {k: "[redacted]" for k in item["headers"]}
    return json.dumps(items)


def _served_model(ex: Exchange) -> str:
    return ex.opts.model_override or ex.model or ex.fallback_model or (
        ex.payload.get("model", "") if isinstance(ex.payload, dict) and isinstance(ex.payload.get("model"), str)
        else "")


class _BadBody(Exception):
    pass


async def _apply_prompt(ex: Exchange) -> bool:
    """Helicone-Prompt-Id: render the managed prompt into the body. True when the body changed."""
    if not isinstance(ex.payload, dict):
        raise _BadBody("Helicone-Prompt-Id needs a JSON object request body")
    applied = await apply_prompt(ex.org_id, ex.opts, ex.payload)
    if applied is None:
        return False
    ex.prompt_id, ex.prompt_version, ex.prompt_variables = applied.prompt_id, applied.version, applied.variables
    if applied.payload is ex.payload:  # tagged only: forward the client's bytes as they are
        return False
    ex.body = orjson.dumps(applied.payload)
    return True


def _prepare_body(ex: Exchange) -> bool:
    """Parse a JSON body once; ask for stream usage when the client did not. True if we asked."""
    ex.upstream_body = ex.body
    content_type = ex.headers.get("content-type", "")
    if not ex.body or not ("json" in content_type or (not content_type and ex.body[:1] in (b"{", b"["))):
        return False
    try:
        ex.payload = loads(ex.body)
    except ValueError as exc:
        raise _BadBody(f"Request body is not valid JSON: {exc}") from None
    payload = ex.payload
    if not isinstance(payload, dict):
        return False
    if (
        payload.get("stream") is True
        and ex.provider in _USAGE_ON_REQUEST
        and ex.path.endswith(("/chat/completions", "/completions"))
    ):
        options = payload.get("stream_options")
        if not (isinstance(options, dict) and options.get("include_usage")):
            # The log keeps the body the client sent; upstream gets the one asking for usage.
            options = {**(options if isinstance(options, dict) else {}), "include_usage": True}
            ex.upstream_body = orjson.dumps({**payload, "stream_options": options})
            return True
    return False


def _watch_disconnect(receive, ex: Exchange, response: UpstreamResponse) -> asyncio.Task:
    task = asyncio.current_task()

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not ex.complete:
                    ex.cancelled = True
                # Stop reading: before the final event the client left (cancelled); after it
                # only the end of the upstream body is missing, which may come much later.
                if not (ex.complete and response.complete):
                    task.cancel()
                return

    return asyncio.get_running_loop().create_task(watch())


def _forward_headers(ex: Exchange) -> list[tuple[str, str]]:
    out = [(name, value) for name, value in ex.headers.items()
           if name not in _REQUEST_DROP and not name.startswith(("helicone-", "helicone_"))]
    out.append(("accept-encoding", "identity"))
    out.append(("connection", "keep-alive"))
    return out


def _fallback_header(ex: Exchange) -> list[tuple[bytes, bytes]]:
    # Which attempt answered: also on our own 502/504 when every attempt failed.
    if ex.fallback_index is None:
        return []
    return [(b"helicone-fallback-index", str(ex.fallback_index).encode())]


def _id_headers(ex: Exchange) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    # Helicone's gateway names the id Helicone-Request-Id, ours Helicone-Id: both, same value.
    value = ex.id.encode()
    return (b"helicone-id", value), (b"helicone-request-id", value)


def _response_extras(ex: Exchange) -> list[tuple[bytes, bytes]]:
    return [*_id_headers(ex), *ex.extra_headers, *_fallback_header(ex)]


async def _forward(send, receive, ex: Exchange, strip_usage: bool) -> None:
    try:
        response = await retry.send(ex, _forward_headers(ex))
    except UpstreamTimeout:
        return await _respond_error(send, ex, 504, "Upstream timed out", "helicone_upstream_timeout")
    except UpstreamError as exc:
        return await _respond_error(send, ex, 502, f"Upstream unreachable: {exc}", "helicone_upstream_error")
    try:
        ex.status = response.status
        headers = [(name.lower(), value) for name, value in response.raw_headers
                   if name.lower() not in _RESPONSE_DROP]
        if ex.cache_key:
            ex.cache_headers = cache.replay_headers(headers)
        headers += _response_extras(ex)
        ex.response_type = response.header(b"content-type")
        if ex.response_type.startswith("text/event-stream"):
            # Streams can run for minutes: a watcher turns a client disconnect into a
            # cancellation of this task (plain responses finish on their own).
            ex.watcher = _watch_disconnect(receive, ex, response)
            await _forward_stream(send, ex, response, headers, strip_usage)
        else:
            await _forward_plain(send, ex, response, headers)
    finally:
        if ex.cancelled:
            response.close()  # drop the upstream connection: nobody reads the rest
        else:
            response.release()


async def _forward_plain(send, ex: Exchange, response: UpstreamResponse, headers) -> None:
    try:
        data = await response.read()
    except UpstreamTimeout:
        return await _respond_error(send, ex, 504, "Upstream timed out while sending the response",
                                    "helicone_upstream_timeout")
    except UpstreamError as exc:
        return await _respond_error(send, ex, 502, f"Upstream response broken: {exc}", "helicone_upstream_error")
    headers.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    ex.response_body = data
    if response.status >= 400:
        ex.error = data[:2000].decode("utf-8", "replace")
    if "json" in ex.response_type:
        try:
            body = loads(data)
        except ValueError:
            body = None
        ex.usage = usage_from_body(body)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            ex.model = body["model"]
    ex.complete = True
    _log(ex)
    await send({"type": "http.response.body", "body": data})


async def _forward_stream(send, ex: Exchange, response: UpstreamResponse, headers, strip_usage: bool) -> None:
    ex.streamed = True
    tee = StreamTee(strip_usage_chunk=strip_usage)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    kept = ex.stream_out = [] if ex.cache_key and ex.opts.cache_write and 200 <= response.status < 300 else None
    kept_size = 0
    try:
        async for chunk in response.iter_chunks():
            if ex.ttft_ms is None:
                ex.ttft_ms = (time.perf_counter() - ex.started) * 1000
            out = tee.feed(chunk)
            if tee.saw_end and not ex.logged:
                # This chunk carries the final event: the record is complete, log it first.
                _take_stream(ex, tee)
                ex.complete = True
                _log(ex)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
                if kept is not None:
                    kept.append(out)
                    kept_size += len(out)
                    if kept_size > settings.GATEWAY_CACHE_MAX_ENTRY_BYTES:
                        kept = ex.stream_out = None
            if tee.saw_end:
                # The client was sent the final event: complete, whenever the body ends
                # and whether or not the client waits for that.
                ex.complete = True
    except UpstreamTimeout:
        if not ex.complete:
            ex.error = "upstream stream timed out"
    except UpstreamError as exc:
        if not ex.complete:
            ex.error = f"upstream stream broken: {exc}"
    finally:
        if not ex.logged:
            _take_stream(ex, tee)
    if not ex.error and not tee.saw_end and tee.recognized and response.status < 400:
        ex.error = "upstream stream ended before its final event"
    rest = tee.finish()
    if rest and kept is not None:
        kept.append(rest)
    ex.complete = True
    _log(ex)
    await send({"type": "http.response.body", "body": rest, "more_body": False})


def _take_stream(ex: Exchange, tee: StreamTee) -> None:
    """What the stream's parser rebuilt, for the log."""
    ex.usage = tee.usage
    ex.model = tee.model
    ex.response_body = tee.response_body()
    if tee.error:
        ex.error = ex.error or f"upstream stream error: {tee.error}"


def _body_text(data: Any, content_type: str) -> str:
    if isinstance(data, bytes):
        if data and not ("json" in content_type or "text" in content_type or not content_type):
            return f"<{len(data)} bytes of {content_type}>"
        text = data.decode("utf-8", "replace")
    elif isinstance(data, (dict, list)):
        text = orjson.dumps(data).decode()
    else:
        text = str(data)
    limit = settings.GATEWAY_MAX_LOGGED_BODY_BYTES
    return text if len(text) <= limit else text[:limit] + "…[truncated]"


def _user_id(opts, payload: Any) -> str:
    """Helicone-User-Id, else the body's `user` (OpenAI) or `metadata.user_id` (Anthropic)."""
    if opts.user_id or not isinstance(payload, dict):
        return opts.user_id
    user = payload.get("user")
    metadata = payload.get("metadata")
    if isinstance(user, str):
        return user[:255]
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        return metadata["user_id"][:255]
    return ""


def _record(ex: Exchange) -> dict[str, Any]:
    opts = ex.opts
    payload = ex.payload if isinstance(ex.payload, dict) else {}
    user_id = _user_id(opts, payload)
    requested_model = payload.get("model") if isinstance(payload.get("model"), str) else ""
    if not requested_model and "/deployments/" in ex.path:
        requested_model = ex.path.split("/deployments/", 1)[1].split("/", 1)[0]
    usage = ex.usage
    return {
        "id": ex.id,
        "org_id": ex.org_id,
        "api_key_id": ex.api_key_id,
        "created_at": ex.created_at,
        "provider": ex.provider or "unknown",
        "method": ex.method,
        "target_url": ex.target_url,
        "path": ex.path,
        "requested_model": requested_model[:200],
        "model": (opts.model_override or ex.model or ex.fallback_model or requested_model)[:200],
        "status": ex.status,
        "error": ex.error[:5000],
        "cancelled": ex.cancelled,
        "streamed": ex.streamed,
        "request_headers": _stored_headers(ex.headers),
        "request_body": "" if opts.omit_request else _body_text(ex.body, ex.headers.get("content-type", "")),
        "response_body": "" if opts.omit_response else _body_text(ex.response_body, ex.response_type),
        "request_omitted": opts.omit_request,
        "response_omitted": opts.omit_response,
        "latency_ms": round((time.perf_counter() - ex.started) * 1000, 3),
        "ttft_ms": None if ex.ttft_ms is None else round(ex.ttft_ms, 3),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "user_id": user_id,
        "session_id": opts.session_id,
        "session_path": opts.session_path,
        "session_name": opts.session_name,
        "properties": opts.properties,
        "request_name": opts.request_name,
        "prompt_id": ex.prompt_id,
        "prompt_version": ex.prompt_version,
        "prompt_variables": ex.prompt_variables,
        "cache_hit": ex.cache_hit,
        "cache_match": ex.cache_match,
        "similarity": None if ex.similarity is None else round(ex.similarity, 4),
        "source_request_id": ex.source_request_id or None,
        "retries": ex.retries,
        "fallback_index": ex.fallback_index,
    }
