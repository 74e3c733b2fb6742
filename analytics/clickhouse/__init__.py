"""ClickHouse, the store of request logs at scale (issue #18): `CLICKHOUSE_URL` makes it the only
one (`only()`; `CLICKHOUSE_ONLY=0` keeps a SQL copy beside it).

- `schema`: the tables and materialized views, created by `migrate` (and `clickhouse_migrate`);
- `store`: the log writer's batched, deduplicated inserts;
- `reads`: the aggregates (summary, grouped, time series) from the hourly rollups.

The connection is one clickhouse-connect HTTP client per thread, from the URL
`http[s]://user:password@host:port/database`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_local = threading.local()


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    username: str
    password: str
    database: str
    secure: bool

    @classmethod
    def parse(cls, url: str) -> "Target":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "clickhouse"):
            raise ImproperlyConfigured(f"CLICKHOUSE_URL scheme {parts.scheme!r} is not supported (use http or https)")
        database = parts.path.strip("/")
        if not database or "/" in database or not database.replace("_", "").isalnum():
            raise ImproperlyConfigured("CLICKHOUSE_URL needs a database name as its path, e.g. /helicone")
        secure = parts.scheme == "https"
        return cls(host=parts.hostname or "127.0.0.1", port=parts.port or (8443 if secure else 8123),
                   username=unquote(parts.username or "default"), password=unquote(parts.password or ""),
                   database=database, secure=secure)


def enabled() -> bool:
    return bool(getattr(settings, "CLICKHOUSE_URL", ""))


def only() -> bool:
    """ClickHouse is the only store of request logs, the default with CLICKHOUSE_URL: the writer
    writes no log and no rollup into SQL, and every change and read of a log goes to ClickHouse.
    With CLICKHOUSE_ONLY=0 logs are written to both (SQL keeps a full copy to fall back on)."""
    return enabled() and bool(getattr(settings, "CLICKHOUSE_ONLY", False))


def target() -> Target:
    return Target.parse(settings.CLICKHOUSE_URL)


def client(database: bool = True):
    """This thread's client (made on first use, remade when CLICKHOUSE_URL changes)."""
    import clickhouse_connect

    url = settings.CLICKHOUSE_URL
    key = (url, database)
    cached = getattr(_local, "clients", None)
    if cached is None:
        cached = _local.clients = {}
    if key not in cached:
        t = Target.parse(url)
        cached[key] = clickhouse_connect.get_client(
            host=t.host, port=t.port, username=t.username, password=t.password, secure=t.secure,
            database=t.database if database else "", compress=False, connect_timeout=5, send_receive_timeout=60,
            autogenerate_session_id=False, tz_mode="aware", form_encode_query_params=True,
        )
    return cached[key]


def moment(value) -> str:
    """A datetime as a DateTime64(6) query parameter (clickhouse-connect's own drops the microseconds)."""
    from datetime import timezone

    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
