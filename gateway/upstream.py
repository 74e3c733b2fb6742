"""The upstream HTTP/1.1 client: pooled keep-alive connections, one per request in flight.

Why not aiohttp or httpx: on the proxy path the client is most of our own CPU
cost, and a general client spends it on features a pass-through proxy never uses
(cookies, redirects, multidicts, tracing, content decoding). This one writes a
request in one syscall and parses responses with httptools (the C parser behind
uvicorn), handing back raw header pairs and body chunks as they arrive.

Corporate networks: upstreams are reached through HTTPS_PROXY / HTTP_PROXY
(either case, credentials in the URL) except for the hosts NO_PROXY lists, with
curl's rules; https goes through a CONNECT tunnel, so the proxy never sees the
request. GATEWAY_CA_BUNDLE (else SSL_CERT_FILE) adds private CAs to the ones
trusted. Parsed once in settings.py.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

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
        context = ssl.create_default_context()
        if settings.GATEWAY_CA_BUNDLE:
            context.load_verify_locations(cafile=settings.GATEWAY_CA_BUNDLE)
        _ssl_context = context
    return _ssl_context


def _tls_problem(host: str, port: int, exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate of {host}:{port} is not trusted: {exc.verify_message or exc.reason} "
                "(a private CA belongs in GATEWAY_CA_BUNDLE)")
    return f"TLS handshake with {host}:{port} failed: {exc.reason or exc}"


def bypasses_proxy(host: str, port: int, no_proxy: list[str]) -> bool:
    """Whether NO_PROXY exempts host:port, with curl's rules: `*` exempts every host; an entry is a
    host name that also covers its subdomains (a leading dot changes nothing), an IP address or a
    CIDR range, each optionally with a `:port`."""
    host = host.lower().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy:
        entry = entry.strip().lower()
        if entry == "*":
            return True
        name, entry_port = entry, ""
        if entry.startswith("["):  # [v6]:port
            name, _, rest = entry[1:].partition("]")
            entry_port = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") == 1:  # host:port (a bare IPv6 address has more colons)
            name, _, entry_port = entry.partition(":")
        if not name or (entry_port and entry_port != str(port)):
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Via:
    """How to reach one upstream (scheme, host, port) through a forward proxy."""

    host: str
    port: int
    variable: str  # HTTPS_PROXY or HTTP_PROXY, for messages
    authorization: str  # a Proxy-Authorization value, or ""

    @property
    def where(self) -> str:
        return f"the proxy {self.host}:{self.port} ({self.variable})"


def _via(scheme: str, host: str, port: int) -> _Via | None:
    url = settings.UPSTREAM_HTTPS_PROXY if scheme == "https" else settings.UPSTREAM_HTTP_PROXY
    if not url or bypasses_proxy(host, port, settings.UPSTREAM_NO_PROXY):
        return None
    parts = urlsplit(url)
    authorization = ""
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(secret).decode()
    return _Via(parts.hostname, parts.port or 80, "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY",
                authorization)


class _Tunnel(asyncio.Protocol):
    """The proxy's answer to CONNECT; the TLS session to the upstream then takes the connection over."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.answer: asyncio.Future = loop.create_future()
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end != -1 and not self.answer.done():
            self.answer.set_result(self.buffer[:end].decode("latin-1"))
        elif len(self.buffer) > 65536 and not self.answer.done():
            self.answer.set_exception(UpstreamError("the proxy's answer to CONNECT is too long"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(UpstreamError("the proxy closed the connection before answering CONNECT"))


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
        self.proxied = bool(settings.UPSTREAM_HTTPS_PROXY or settings.UPSTREAM_HTTP_PROXY)
        self.routes: dict[tuple[str, str, int], _Via | None] = {}

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

    def _route(self, key: tuple[str, str, int]) -> _Via | None:
        if not self.proxied:
            return None
        try:
            return self.routes[key]
        except KeyError:
            via = self.routes[key] = _via(*key)
            return via

    async def _connect(self, key: tuple[str, str, int], via: _Via | None) -> _Connection:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        scheme, host, port = key
        try:
            if via is None:
                _, conn = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: _Connection(self, key), host, port,
                        ssl=_ssl() if scheme == "https" else None,
                        server_hostname=host if scheme == "https" else None,
                    ),
                    settings.GATEWAY_CONNECT_TIMEOUT,
                )
            elif scheme == "https":
                conn = await asyncio.wait_for(self._tunnel(key, via), settings.GATEWAY_CONNECT_TIMEOUT)
            else:
                try:
                    _, conn = await asyncio.wait_for(
                        self.loop.create_connection(lambda: _Connection(self, key), via.host, via.port),
                        settings.GATEWAY_CONNECT_TIMEOUT)
                except OSError as exc:
                    raise UpstreamError(f"cannot connect to {via.where}: {exc}") from None
        except asyncio.TimeoutError:
            through = f" through {via.where}" if via is not None else ""
            raise UpstreamTimeout(f"connecting to {host}:{port}{through} timed out") from None
        except ssl.SSLError as exc:
            raise UpstreamError(_tls_problem(host, port, exc)) from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {exc}") from None
        return conn

    async def _tunnel(self, key: tuple[str, str, int], via: _Via) -> _Connection:
        """CONNECT through the proxy, then TLS with the upstream inside the tunnel."""
        _scheme, host, port = key
        try:
            transport, tunnel = await self.loop.create_connection(lambda: _Tunnel(self.loop), via.host, via.port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {via.where}: {exc}") from None
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if via.authorization:
            lines += f"Proxy-Authorization: {via.authorization}\r\n"
        transport.write((lines + "\r\n").encode("latin-1"))
        try:
            head = await tunnel.answer
            status_line = head.split("\r\n", 1)[0]
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise UpstreamError(f"{via.where} answered CONNECT with {status_line[:100]!r}")
            if not 200 <= int(parts[1]) < 300:
                # 407 is the standard answer; tinyproxy answers CONNECT with 401.
                hint = " (check the user and password in the proxy URL)" if parts[1] in ("401", "407") else ""
                raise UpstreamError(f"{via.where} refused CONNECT {target}: {' '.join(parts[1:])}{hint}")
            conn = _Connection(self, key)
            tls = await self.loop.start_tls(transport, conn, _ssl(), server_hostname=host)
        except BaseException:
            transport.abort()
            raise
        conn.connection_made(tls)  # start_tls hands the new transport over without calling it
        return conn

    async def request(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> UpstreamResponse:
        """Send the request; returns once the response's status and headers arrived."""
        parts = urlsplit(url)
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, parts.hostname or "", port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]
        via = self._route(key)
        if via is not None and scheme == "http":
            # Through a plain HTTP proxy: the absolute URL, and the proxy's credentials.
            target = f"http://{host}{target}"
            if via.authorization:
                headers = [*headers, ("Proxy-Authorization", via.authorization)]
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        payload = "".join(lines).encode("latin-1") + body
        for attempt in (0, 1):
            conn = await self._connect(key, via)
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
