"""A reference point, not the product: the thinnest ASGI proxy under daphne.

It forwards a POST to UPSTREAM_URL with one shared aiohttp session and passes
the answer back (streams chunk by chunk), with no auth, no header parsing and
no logging. The benchmark runs it next to the gateway so the table shows how
much of the overhead is daphne + aiohttp themselves on this machine, and how
much is the gateway's own work.

    UPSTREAM_URL=http://127.0.0.1:9000 python -m daphne -p 8001 bench.bare_proxy:app
"""

import os

import aiohttp

UPSTREAM = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:9000").rstrip("/")
_DROP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length"}
_session = None


async def app(scope, receive, send):
    global _session
    if scope["type"] != "http":
        return
    if _session is None:
        _session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
               if k not in (b"host", b"content-length")]
    path = scope["path"].removeprefix("/oai")
    async with _session.request(scope["method"], UPSTREAM + path, headers=headers, data=body) as resp:
        out = [(k.lower(), v) for k, v in resp.raw_headers if k.lower() not in _DROP]
        if resp.content_type == "text/event-stream":
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            data = await resp.read()
            out.append((b"content-length", str(len(data)).encode()))
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            await send({"type": "http.response.body", "body": data})
