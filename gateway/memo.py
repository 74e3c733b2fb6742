"""A per-process cache of database answers for the gateway path (keys, prompts).

An answer is served from memory while fresh (`ttl` seconds). Once stale it is
still served, and refreshed in the background, so a slow or unreachable database
never stalls the requests of a known key or prompt; past `ttl + stale_limit`
(an entry nobody asked for in a while) the database is asked before answering.
While the database fails, the last known answer keeps serving. Concurrent misses
for one key share a single lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """Nothing is cached for the key and the database cannot be asked."""


class RefreshingCache:
    def __init__(self, name: str, load: Callable[..., Any], ttl: Callable[[], float], stale_limit: float,
                 max_entries: int = 50_000):
        self.name = name
        self.load = sync_to_async(load)  # load(*key) for tuple keys, load(key) otherwise
        self.ttl = ttl
        self.stale_limit = stale_limit
        self.max_entries = max_entries
        # key -> (fresh_until, answer); None is a valid answer ("no such key").
        self.entries: dict[Hashable, tuple[float, Any]] = {}
        self._inflight: dict[Hashable, asyncio.Future] = {}
        self._refreshing: set[Hashable] = set()

    async def get(self, key: Hashable) -> Any:
        cached = self.entries.get(key)
        now = time.monotonic()
        if cached is None or cached[0] + self.stale_limit < now:
            # Unknown, or not asked for in a while: ask the database before answering.
            try:
                return await self._fetch(key)
            except DatabaseError as exc:
                if cached is None:
                    raise Unavailable(f"{self.name} cannot be read right now (database unavailable)") from exc
                self._warn(exc)
                return cached[1]
        if cached[0] <= now and key not in self._refreshing:
            self._refreshing.add(key)
            asyncio.get_running_loop().create_task(self._refresh(key))
        return cached[1]

    def forget(self, key: Hashable) -> None:
        self.entries.pop(key, None)

    def clear(self) -> None:
        self.entries.clear()

    async def _fetch(self, key: Hashable) -> Any:
        future = self._inflight.get(key)
        if future is not None:
            return await asyncio.shield(future)
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            answer = await (self.load(*key) if isinstance(key, tuple) else self.load(key))
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        else:
            future.set_result(answer)
        finally:
            self._inflight.pop(key, None)
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        self.entries[key] = (time.monotonic() + self.ttl(), answer)
        return answer

    async def _refresh(self, key: Hashable) -> None:
        try:
            await self._fetch(key)
        except DatabaseError as exc:
            self._warn(exc)
        finally:
            self._refreshing.discard(key)

    def _warn(self, exc: Exception) -> None:
        log.warning("%s lookup failed (%s); serving the last known answer", self.name, exc.__class__.__name__)
