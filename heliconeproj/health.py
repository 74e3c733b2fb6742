"""`/healthz`, `/readyz` and `/metrics`, answered before Django.

Load balancers and Prometheus probe by IP address over plain HTTP, without a
session: answered here, these paths skip ALLOWED_HOSTS, the HTTPS redirect,
sessions and every middleware, and cost the pages nothing.

- `/healthz`: the process is up and its event loop answers. No I/O.
- `/readyz`: the database and Redis (when REDIS_URL is set) answer; 503 naming
  what does not. Details go to the log, not to the anonymous caller.
- `/metrics`: Prometheus text (heliconeproj/metrics.py); with METRICS_TOKEN set,
  only for `Authorization: Bearer <METRICS_TOKEN>`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

import orjson
from django.conf import settings

log = logging.getLogger(__name__)

# Seconds a readiness check waits for the database or Redis.
CHECK_TIMEOUT = 3.0


async def _send(send, status: int, body: bytes, content_type: bytes, extra=()) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"), *extra],
    })
    await send({"type": "http.response.body", "body": body})


async def _send_json(send, status: int, data: dict, extra=()) -> None:
    await _send(send, status, orjson.dumps(data), b"application/json", extra)


def _check_database() -> None:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        # A fresh connection each time: this runs in a pool thread, and it is what is being checked.
        connection.close()


def _check_redis() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT,
                                  socket_connect_timeout=CHECK_TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()


async def _probe(name: str, check) -> str:
    try:
        await asyncio.wait_for(asyncio.to_thread(check), CHECK_TIMEOUT + 1)
        return "ok"
    except Exception as exc:
        log.warning("readiness: %s unreachable: %s: %s", name, type(exc).__name__, exc)
        return "unreachable"


async def readiness() -> tuple[bool, dict[str, str]]:
    checks = {"database": _probe("database", _check_database)}
    if settings.REDIS_URL:
        checks["redis"] = _probe("Redis", _check_redis)
    results = dict(zip(checks, await asyncio.gather(*checks.values())))
    return all(value == "ok" for value in results.values()), results


async def healthz(scope, receive, send) -> None:
    await _send_json(send, 200, {"status": "ok"})


async def readyz(scope, receive, send) -> None:
    ready, checks = await readiness()
    if ready:
        return await _send_json(send, 200, {"status": "ready", "checks": checks})
    names = {"database": "the database", "redis": "Redis"}
    down = [names[name] for name, value in checks.items() if value != "ok"]
    error = f"{' and '.join(down)} {'is' if len(down) == 1 else 'are'} unreachable"
    await _send_json(send, 503, {"status": "unavailable", "error": error, "checks": checks},
                     [(b"retry-after", b"5")])


def _authorized(scope) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    return False


async def metrics(scope, receive, send) -> None:
    if not _authorized(scope):
        return await _send_json(send, 401, {"error": "Send 'Authorization: Bearer <METRICS_TOKEN>' to read metrics"},
                                [(b"www-authenticate", b'Bearer realm="metrics"')])
    from . import metrics as prometheus

    body, content_type = await asyncio.to_thread(prometheus.render)
    await _send(send, 200, body, content_type.encode())


ENDPOINTS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class OpsEndpoints:
    """ASGI: the three operations paths here, everything else to `app`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        endpoint = ENDPOINTS.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            return await self.app(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD"):
            return await _send_json(send, 405, {"error": f"{scope['path']} answers GET and HEAD only"},
                                    [(b"allow", b"GET, HEAD")])
        await endpoint(scope, receive, send)
