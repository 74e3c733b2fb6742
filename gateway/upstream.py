"""The upstream HTTP/1.1 client: pooled keep-alive connections, one per request in flight.

Why not aiohttp or httpx: on the proxy path the client is most of our own CPU
cost, and a general client spends it on features a pass-through proxy never uses
(cookies, redirects, multidicts, tracing, content decoding). This one writes a
request in one syscall and parses responses with httptools (the C parser behind
uvicorn), handing back raw header pairs and body chunks as they arrive.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from urllib.parse import urlsplit

import httptools
from django.conf import settings


class UpstreamError(Exception):
    """The upstream could not be reached or broke the connection."""


class UpstreamTimeout(UpstreamError):
    """No byte from the upstream within the read timeout (or no connection in time)."""


_ssl_context: ssl.SSLContext | None = None


def _ssl() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request at a time."""

    def __init__(self, pool: "Pool", key: tuple[str, str, int]):
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.response: UpstreamResponse | None = None
        self.reused = False

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        response.last_activity = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            response._fail(UpstreamError("upstream switched protocols"))
        except httptools.HttpParserError as exc:
            response._fail(UpstreamError(f"invalid HTTP response from upstream: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not response.complete:
            if response.headers_done and response.until_eof:
                response._finish()  # a body delimited by closing the connection
            else:
                response._fail(UpstreamError("upstream closed the connection" + (f": {exc}" if exc else "")))
        self.pool._forget(self)

    def pause_writing(self) -> None:  # request bodies are written at once; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        response.status = self.parser.get_status_code()
        if 100 <= response.status < 200:  # informational: the real answer follows
            response.raw_headers.clear()
            return
        response.keep_alive = self.parser.should_keep_alive()
        names = {name.lower() for name, _ in response.raw_headers}
        response.until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        response.headers_done = True
        if not response.headers_future.done():
            response.headers_future.set_result(None)
        if response.method == "HEAD" or response.status in (204, 304):
            response._finish()

    def on_body(self, body: bytes) -> None:
        self.response._data(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None and response.headers_done:
            response._finish()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamResponse:
    """Status and raw headers as soon as they arrive; the body read whole or as chunks."""

    def __init__(self, conn: _Connection, method: str, loop: asyncio.AbstractEventLoop):
        self.conn = conn
        self.method = method
        self.loop = loop
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.keep_alive = False
        self.until_eof = False
        self.complete = False
        self.error: Exception | None = None
        self.headers_future: asyncio.Future = loop.create_future()
        self.chunks: deque[bytes] = deque()
        self.waiter: asyncio.Future | None = None
        self.last_activity = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None

    def header(self, name: bytes, default: str = "") -> str:
        for key, value in self.raw_headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return default

    # fed by the connection
    def _data(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._wake()

    def _finish(self) -> None:
        if self.complete:
            return
        self.complete = True
        self._cancel_timer()
        self._wake()
        if not self.headers_future.done():
            self.headers_future.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self.complete or self.error is not None:
            return
        self.error = exc
        self._cancel_timer()
        if not self.headers_future.done():
            self.headers_future.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # read timeout: one timer, re-armed lazily rather than on every chunk
    def _arm_timer(self, timeout: float) -> None:
        self.timer = self.loop.call_later(timeout, self._check_timeout, timeout)

    def _check_timeout(self, timeout: float) -> None:
        idle = time.monotonic() - self.last_activity
        if idle < timeout:
            self.timer = self.loop.call_later(timeout - idle, self._check_timeout, timeout)
            return
        self.timer = None
        self._fail(UpstreamTimeout(f"no data from upstream for {timeout:g}s"))
        self.conn.close()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # consumer side
    async def read(self) -> bytes:
        while not self.complete:
            await self._wait()
        return b"".join(self.chunks)

    async def iter_chunks(self):
        while True:
            while self.chunks:
                yield self.chunks.popleft()
            if self.complete:
                return
            await self._wait()

    async def _wait(self) -> None:
        if self.error is not None:
            raise self.error
        self.waiter = self.loop.create_future()
        await self.waiter
        self.waiter = None
        if self.error is not None and not self.chunks:
            raise self.error

    def release(self) -> None:
        """Give the connection back to the pool when the exchange ended cleanly."""
        self._cancel_timer()
        conn = self.conn
        conn.response = None
        if self.complete and self.error is None and self.keep_alive and not conn.closed:
            conn.pool._put_back(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Drop the connection (the client went away; the rest is never read)."""
        self._cancel_timer()
        self.conn.response = None
        self.conn.close()


class Pool:
    """Idle keep-alive connections per (scheme, host, port), for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.idle: dict[tuple[str, str, int], list[_Connection]] = {}

    def _forget(self, conn: _Connection) -> None:
        idle = self.idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def _put_back(self, conn: _Connection) -> None:
        idle = self.idle.setdefault(conn.key, [])
        if len(idle) < settings.GATEWAY_MAX_IDLE_CONNECTIONS:
            conn.reused = True
            idle.append(conn)
        else:
            conn.close()

    async def _connect(self, key: tuple[str, str, int]) -> _Connection:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        scheme, host, port = key
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Connection(self, key), host, port,
                    ssl=_ssl() if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                ),
                settings.GATEWAY_CONNECT_TIMEOUT,
            )
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {exc}") from None
        return conn

    async def request(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> UpstreamResponse:
        """Send the request; returns once the response's status and headers arrived."""
        parts = urlsplit(url)
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, parts.hostname or "", port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        payload = "".join(lines).encode("latin-1") + body
        for attempt in (0, 1):
            conn = await self._connect(key)
            response = UpstreamResponse(conn, method, self.loop)
            conn.response = response
            conn.parser = httptools.HttpResponseParser(conn)
            response._arm_timer(settings.GATEWAY_UPSTREAM_TIMEOUT)
            conn.transport.write(payload)
            try:
                await response.headers_future
                return response
            except UpstreamTimeout:
                raise
            except UpstreamError:
                # A kept-alive connection the server had already closed: try once on a new one.
                # Only when nothing at all came back, so the request was never processed.
                if attempt == 0 and conn.reused and response.status == 0:
                    continue
                raise
            except asyncio.CancelledError:
                response.close()
                raise
        raise AssertionError("unreachable")


_pools: dict[asyncio.AbstractEventLoop, Pool] = {}


def get_pool() -> Pool:
    """The connection pool of the running event loop."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = Pool(loop)
    return pool
