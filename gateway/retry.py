"""Retries (`Helicone-Retry-*`) and fallbacks (`Helicone-Fallback`, `Helicone-Fallbacks`).

Everything here happens before the first byte of a response reaches the
client: a response is either handed back to be forwarded, or closed unread and
tried again. Once forwarding starts (a stream included) nothing is retried.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import orjson

from formats.headers import Fallback, RetryOptions

from .exchange import Exchange
from .upstream import UpstreamError, UpstreamResponse, get_pool

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _default_fallback_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def backoff_seconds(retry: RetryOptions, attempt: int) -> float:
    """Wait before retry number `attempt + 1`: min * factor^attempt, capped at max."""
    return min(retry.min_timeout_ms * retry.factor ** attempt, retry.max_timeout_ms) / 1000


def retry_after_seconds(response: UpstreamResponse) -> float | None:
    """`retry-after-ms` (OpenAI), else `Retry-After` in seconds or as an HTTP date."""
    value = response.header(b"retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = response.header(b"retry-after").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _discard(outcome: UpstreamResponse | Exception | None) -> None:
    if isinstance(outcome, UpstreamResponse):
        outcome.close()  # an error body nobody will read: drop the connection


async def send(ex: Exchange, headers: list[tuple[str, str]]) -> UpstreamResponse:
    """The upstream response to forward, after retries and fallbacks; raises UpstreamError
    when the last attempt could not reach the upstream."""
    opts = ex.opts
    if opts.retry is None and not opts.fallbacks:
        return await get_pool().request(ex.method, ex.target_url, headers, ex.upstream_body)
    if opts.fallbacks:
        ex.fallback_index = 0
    outcome: UpstreamResponse | Exception = await _with_retries(ex, ex.target_url, headers, ex.upstream_body)
    for index, fallback in enumerate(opts.fallbacks, 1):
        if isinstance(outcome, UpstreamResponse) and not _triggers(fallback, outcome.status):
            break
        _discard(outcome)
        ex.fallback_index = index
        ex.fallback_model = fallback.body_override.get("model", "") if isinstance(
            fallback.body_override.get("model"), str) else ""
        url, fb_headers, body = _fallback_request(ex, fallback, headers)
        outcome = await _with_retries(ex, url, fb_headers, body)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _triggers(fallback: Fallback, status: int) -> bool:
    if status < 400:
        return False
    if not fallback.on_codes:
        return _default_fallback_status(status)
    return any(low <= status <= high for low, high in fallback.on_codes)


def _fallback_request(ex: Exchange, fallback: Fallback, headers: list[tuple[str, str]]):
    url = ex.target_url
    if fallback.target_url:
        url = fallback.target_url + ex.target_url[len(ex.route_base):]
    if fallback.headers:
        replaced = {name for name, _value in fallback.headers}
        headers = [(n, v) for n, v in headers if n not in replaced] + list(fallback.headers)
    body = ex.upstream_body
    if fallback.body_override:
        payload: Any = orjson.loads(body)  # a JSON object: checked before anything was sent
        body = orjson.dumps({**payload, **fallback.body_override})
    return url, headers, body


async def _with_retries(ex: Exchange, url: str, headers: list[tuple[str, str]],
                        body: bytes) -> UpstreamResponse | Exception:
    retry = ex.opts.retry
    attempts = 1 + (retry.num if retry else 0)
    pool = get_pool()
    for attempt in range(attempts):
        if attempt:
            ex.retries += 1
        retry_after = None
        try:
            outcome: UpstreamResponse | Exception = await pool.request(ex.method, url, headers, body)
        except UpstreamError as exc:
            outcome = exc
        else:
            if outcome.status not in RETRY_STATUSES:
                return outcome
            retry_after = retry_after_seconds(outcome)
        if attempt == attempts - 1:
            return outcome
        delay = backoff_seconds(retry, attempt)
        if retry_after is not None:
            if retry_after > retry.max_timeout_ms / 1000:
                return outcome  # the provider asks for a longer wait than the client allows
            delay = max(delay, retry_after)
        _discard(outcome)
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")
