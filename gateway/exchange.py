"""What one proxied request accumulates on its way through the gateway, for its answer and its log."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from formats.headers import GatewayOptions
from formats.usage import Usage


@dataclass(slots=True)
class Exchange:
    """What one request accumulates on its way through, for the log record."""

    id: str
    started: float
    created_at: float
    method: str
    headers: dict[str, str]
    org_id: int | None = None
    api_key_id: int | None = None
    opts: GatewayOptions = field(default_factory=GatewayOptions)
    provider: str = ""
    target_url: str = ""
    path: str = ""
    body: bytes = b""  # as the client sent it (after prompt rendering): what the log keeps
    upstream_body: bytes = b""  # what is forwarded
    response_type: str = ""
    watcher: asyncio.Task | None = None
    payload: Any = None
    status: int = 0
    error: str = ""
    cancelled: bool = False
    complete: bool = False  # the client has the whole response
    streamed: bool = False
    response_body: Any = ""
    ttft_ms: float | None = None
    prompt_id: str = ""
    prompt_version: int | None = None
    prompt_variables: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    route_base: str = ""  # the upstream base URL of the route (fallbacks may swap it)
    # Response headers of the optional features (rate limits, cache), on every answer.
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()
    rate_charges: list | tuple = ()  # token/cents counters to charge after the response
    cache_key: str = ""
    cache_free: list[int] | None = None
    cache_hit: bool = False
    cache_match: str = ""  # "exact" or "semantic" on a hit, "shadow" for a shadow-mode candidate
    semantic: Any = None  # the semantic lookup's plan (gateway.semantic.Plan) for an eligible request
    similarity: float | None = None
    source_request_id: str = ""
    stream_out: list[bytes] | None = None  # a stream as the client got it, kept to cache it
    cache_headers: list[tuple[bytes, bytes]] | tuple = ()
    retries: int = 0
    fallback_index: int | None = None
    fallback_model: str = ""
    logged: bool = False  # its record is in the journal and the queue
