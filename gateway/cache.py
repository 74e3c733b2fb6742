"""The response cache: `Helicone-Cache-Enabled`, `-Save`, `-Read` and friends.

Entries live in Django's cache framework (django-redis with REDIS_URL, local
memory otherwise), one cache key per bucket slot: `<key>:<index>` for index in
0..N-1 of `Helicone-Cache-Bucket-Max-Size`. A lookup reads every slot of the
bucket in one `get_many`.

The local-memory backend is called directly on the event loop (it is a dict
behind a lock). Every other backend does network I/O, so its calls run in the
default thread pool with the short GATEWAY_REDIS_TIMEOUT socket timeouts: a
hung Redis delays a cached request by at most that, and never stalls the loop.
A cache that fails is a miss, never an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import caches
from django.utils.module_loading import import_string

from formats.headers import GatewayOptions

log = logging.getLogger(__name__)

_VERSION = 2  # 2 added source_id; entries of 1 still load
# Provider headers not replayed on a hit: they describe the original exchange.
_NOT_REPLAYED = frozenset({b"date", b"set-cookie", b"helicone-id", b"content-length", b"transfer-encoding",
                           b"connection", b"keep-alive"})


@dataclass(slots=True)
class CachedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes  # a plain response's body
    chunks: list[bytes] | None  # a stream's chunks as the client received them
    response_type: str
    usage: tuple[int | None, int | None, int | None, int | None]
    model: str
    log_body: Any  # what the log keeps as the response (a stream rebuilt)
    source_id: str = ""  # the request whose answer this is
    bucket_index: int = 0

    def dump(self) -> tuple:
        return (_VERSION, self.status, self.headers, self.body, self.chunks, self.response_type, self.usage,
                self.model, self.log_body, self.source_id)

    @classmethod
    def load(cls, value: Any, index: int) -> "CachedResponse | None":
        if not isinstance(value, tuple) or not value or value[0] not in (1, _VERSION):
            return None
        return cls(*value[1:], bucket_index=index)


def cache_key(org_id: int, opts: GatewayOptions, method: str, target_url: str, body: bytes, payload: Any) -> str:
    """Seed, method, target URL and body (minus ignored top-level keys), within one org."""
    if opts.cache_ignore_keys and isinstance(payload, dict):
        body = orjson.dumps(without_ignored_keys(payload, opts))
    # The org is part of the key, not of the hash, so no two orgs can ever share an entry.
    return f"gw:{org_id}:{digest((opts.cache_seed, method, target_url), body)}"


def without_ignored_keys(payload: dict[str, Any], opts: GatewayOptions) -> dict[str, Any]:
    """The body minus Helicone-Cache-Ignore-Keys' top-level keys."""
    ignored = set(opts.cache_ignore_keys)
    return {k: v for k, v in payload.items() if k not in ignored}


def digest(parts: tuple[str, ...], body: bytes) -> str:
    """sha256 of the parts (each length-prefixed, so no two sequences collide) and then the body."""
    hashed = hashlib.sha256()
    for part in parts:
        encoded = part.encode()
        hashed.update(len(encoded).to_bytes(4, "big"))
        hashed.update(encoded)
    hashed.update(body)
    return hashed.hexdigest()


def replay_headers(raw_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in raw_headers if name not in _NOT_REPLAYED
            and not name.startswith(b"helicone-")]


class _Store:
    def __init__(self):
        conf = settings.CACHES["default"]
        self.in_memory = "locmem" in conf["BACKEND"].lower()
        if self.in_memory:
            self.backend = caches["default"]
        else:
            # Our own instance of the configured backend, with socket timeouts short
            # enough for the request path (the project's default cache waits longer).
            timeout = settings.GATEWAY_REDIS_TIMEOUT
            params = {k: v for k, v in conf.items() if k not in ("BACKEND", "LOCATION")}
            params["OPTIONS"] = {**conf.get("OPTIONS", {}), "SOCKET_TIMEOUT": timeout,
                                 "SOCKET_CONNECT_TIMEOUT": timeout}
            self.backend = import_string(conf["BACKEND"])(conf.get("LOCATION", ""), params)

    async def _call(self, fn, *args):
        if self.in_memory:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def get_many(self, keys: list[str]) -> dict[str, Any]:
        try:
            return await self._call(self.backend.get_many, keys)
        except Exception as exc:
            log.warning("response cache unavailable (%s: %s); treating as a miss", exc.__class__.__name__, exc)
            return {}

    async def set(self, key: str, value: Any, seconds: int) -> None:
        try:
            await self._call(self.backend.set, key, value, seconds)
        except Exception as exc:
            log.warning("response cache unavailable (%s: %s); not stored", exc.__class__.__name__, exc)


_store: _Store | None = None


def _get_store() -> _Store:
    global _store
    if _store is None:
        _store = _Store()
    return _store


def slots(key: str, size: int) -> list[str]:
    """The cache keys of a bucket's entries."""
    return [f"{key}:{i}" for i in range(size)]


def entries_in(found: dict[str, Any], key: str, size: int) -> list[CachedResponse]:
    """The entries of a bucket among values read from the cache."""
    entries = []
    for index, slot in enumerate(slots(key, size)):
        if slot in found:
            entry = CachedResponse.load(found[slot], index)
            if entry is not None:
                entries.append(entry)
    return entries


async def lookup(key: str, opts: GatewayOptions, also: tuple[str, ...] = ()
                 ) -> tuple[CachedResponse | None, list[int], dict[str, Any]]:
    """A cached response to serve (or None), the free bucket slots for storing, and the values of
    the `also` keys (read in the same round trip).

    While the bucket is not full, a request that also writes goes upstream to
    fill it; a read-only request is served from whatever the bucket holds.
    """
    size = opts.cache_bucket_size
    found = await _get_store().get_many([*slots(key, size), *also])
    extra = {name: found[name] for name in also if name in found}
    entries = entries_in(found, key, size)
    free = sorted(set(range(size)) - {e.bucket_index for e in entries})
    if entries and (not free or not opts.cache_write):
        return random.choice(entries), free, extra
    return None, free, extra


_background: set[asyncio.Task] = set()


def store(key: str, opts: GatewayOptions, entry: CachedResponse, free: list[int] | None) -> bool:
    """Write the entry in the background; `free` are the slots the lookup found empty (None: unknown).
    False when the entry is too large to keep."""
    size = len(entry.body) + sum(len(c) for c in entry.chunks or ())
    if size > settings.GATEWAY_CACHE_MAX_ENTRY_BYTES:
        return False
    task = asyncio.get_running_loop().create_task(_store_entry(key, opts, entry, free))
    _background.add(task)
    task.add_done_callback(_background.discard)
    return True


async def _store_entry(key: str, opts: GatewayOptions, entry: CachedResponse, free: list[int] | None) -> None:
    size = opts.cache_bucket_size
    if free is None:
        if size == 1:
            free = [0]
        else:  # a save-only request: find the empty slots now
            _hit, free, _ = await lookup(key, GatewayOptions(cache_bucket_size=size, cache_write=True))
    # A full bucket (a save-only request) has a random slot refreshed.
    index = random.choice(free) if free else random.randrange(size)
    await _get_store().set(f"{key}:{index}", entry.dump(), opts.cache_seconds)
