"""One shared keep-alive HTTP client for every upstream call of this process."""

from __future__ import annotations

import asyncio

import aiohttp
from django.conf import settings

_session: aiohttp.ClientSession | None = None
_session_loop: asyncio.AbstractEventLoop | None = None


def get_session() -> aiohttp.ClientSession:
    """The process's client session, created on first use inside the serving loop."""
    global _session, _session_loop
    loop = asyncio.get_running_loop()
    if _session is None or _session_loop is not loop or _session.closed:
        connector = aiohttp.TCPConnector(
            limit=settings.GATEWAY_MAX_UPSTREAM_CONNECTIONS,
            ttl_dns_cache=300,
            keepalive_timeout=60,
        )
        _session = aiohttp.ClientSession(
            connector=connector,
            # Bodies pass through byte for byte; we ask upstream for identity encoding.
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=settings.GATEWAY_CONNECT_TIMEOUT,
                sock_read=settings.GATEWAY_UPSTREAM_TIMEOUT,
            ),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        _session_loop = loop
    return _session
