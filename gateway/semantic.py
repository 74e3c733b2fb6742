"""The semantic cache: a tier under the exact cache that serves an earlier answer to a paraphrase.

On an exact miss, an eligible request (formats.last_turn) embeds only its last user text and
searches the entries of its scope: an equality key over everything else (org; key, user or the
whole org; provider, method, URL; the whole body minus that text; cache seed and ignored keys;
prompt id and version; the embedder). History and parameters therefore match byte for byte,
and no entry is ever visible across orgs. A candidate above the threshold is served only if
the guard (gateway.semantic_guard, a pure function of the two texts) passes it and the exact
cache entry it points to still exists (a dangling pointer is a miss).

Each process keeps the vectors of the scopes it serves as one numpy matrix, reloaded from the
database when the scope's version counter or its org's moved (read in the same cache round trip
as the exact lookup) and at least every GATEWAY_SEMANTIC_RELOAD_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import orjson
from django.conf import settings

from analytics import semantic_store
from formats import last_turn
from formats.headers import GatewayOptions, HeaderError

from . import cache, embedder
from .exchange import Exchange
from .metrics import SEMANTIC_LOOKUPS
from .semantic_guard import check

log = logging.getLogger(__name__)

# Shadow mode records the best candidate from this similarity up, so the dashboard can show what
# each threshold would have served.
SHADOW_FLOOR = 0.8
MAX_CANDIDATES = 8  # guard-checked per lookup, most similar first
_TOUCH_SECONDS = 60.0  # an entry's last hit is written at most this often per process
_LOAD_DEADLINE = 1.0  # seconds a request waits for its scope to load from the database
_PREFETCH_SLOTS = 4  # a candidate's answer is read with the exact lookup if its bucket is this small


@dataclass(slots=True)
class Plan:
    """An eligible request's semantic lookup: its scope and last user text."""

    org_id: int
    scope: str
    text: str
    user_id: str
    version_keys: tuple[str, str]
    vector: np.ndarray | None = None
    # Searched before the exact lookup in the scope this process holds: that scope, and the
    # guard-passed candidates whose answers are read in the exact lookup's round trip.
    held: Any = None
    candidates: list[tuple[float, semantic_store.Entry]] = field(default_factory=list)


@dataclass(slots=True)
class Match:
    response: cache.CachedResponse
    similarity: float
    entry: semantic_store.Entry


@dataclass(slots=True)
class _Scope:
    versions: tuple[Any, Any]
    loaded_at: float
    entries: list[semantic_store.Entry]
    matrix: np.ndarray
    cache_keys: set[str] = field(default_factory=set)


def plan(ex: Exchange, user_id: str, org_scope_allowed: bool) -> Plan | None:
    """The request's semantic lookup, or None when it is not eligible; a scope it may not use is a
    HeaderError (400)."""
    opts = ex.opts
    found = last_turn.split(ex.path, ex.payload)
    if found is None:
        return None
    text, rest = found
    if opts.cache_ignore_keys:
        rest = cache.without_ignored_keys(rest, opts)
    if opts.cache_semantic_scope == "user":
        if not user_id:
            raise HeaderError("Helicone-Cache-Semantic-Scope", "user needs a Helicone-User-Id header")
        owner = "user:" + user_id
    elif opts.cache_semantic_scope == "org":
        if not org_scope_allowed:
            raise HeaderError("Helicone-Cache-Semantic-Scope", "org is not allowed in this organization "
                                                               "(an org admin can allow it in Settings)")
        owner = "org"
    else:
        owner = f"key:{ex.api_key_id}"
    scope = cache.digest((owner, ex.provider, ex.method, ex.target_url, opts.cache_seed, ex.prompt_id,
                          str(ex.prompt_version), embedder.EMBEDDER_ID),
                         orjson.dumps(rest, option=orjson.OPT_SORT_KEYS))
    return Plan(ex.org_id, scope, text, user_id, (semantic_store.scope_version_key(ex.org_id, scope),
                                                   semantic_store.org_version_key(ex.org_id)))


def prefetch(p: Plan, floor: float) -> tuple[str, ...]:
    """Before the exact lookup, when this process holds the scope (the steady state): embed, search
    and guard now, and return the keys to read with the exact lookup (the scope's version counters
    and the best candidate's answer), so a semantic hit costs no second cache round trip. `find`
    checks the versions read before it trusts this search."""
    keys = p.version_keys
    if embedder.loaded() and (held := _scopes.get((p.org_id, p.scope))) is not None:
        _scopes.move_to_end((p.org_id, p.scope))
        try:
            p.vector = embedder.embed(p.text)
            p.held = held
            p.candidates = _guarded(held, p.vector, floor, p.text)
        except Exception:
            log.exception("semantic cache search failed; treating it as a miss")
            p.held, p.candidates = None, []
            return keys
        if p.candidates and p.candidates[0][1].bucket_size <= _PREFETCH_SLOTS:
            entry = p.candidates[0][1]
            keys += tuple(cache.slots(entry.cache_key, entry.bucket_size))
    return keys


async def find(p: Plan, found: dict[str, Any], floor: float) -> Match | None:
    """The most similar entry from `floor` up that the guard passes and whose answer is still cached;
    `found` holds what the exact lookup read of `prefetch`'s keys. Any failure is a miss, never an
    error of the request."""
    try:
        return await _find(p, found, floor)
    except Exception:
        log.exception("semantic cache lookup failed; treating it as a miss")
        return None


async def _find(p: Plan, found: dict[str, Any], floor: float) -> Match | None:
    versions = (found.get(p.version_keys[0]), found.get(p.version_keys[1]))
    prefetched = p.held is not None and _fresh(p.held, versions)
    if not prefetched:
        await embedder.ready()
        if p.vector is None:
            p.vector = embedder.embed(p.text)
        p.candidates = _guarded(await _scope(p, versions), p.vector, floor, p.text)
    for index, (similarity, entry) in enumerate(p.candidates):
        if index == 0 and prefetched and entry.bucket_size <= _PREFETCH_SLOTS:  # read with the exact lookup
            entries = cache.entries_in(found, entry.cache_key, entry.bucket_size)
            response = random.choice(entries) if entries else None
        else:
            response, _, _ = await cache.lookup(entry.cache_key, GatewayOptions(cache_bucket_size=entry.bucket_size))
        if response is None:
            SEMANTIC_LOOKUPS.labels("dangling").inc()
            continue
        return Match(response, similarity, entry)
    return None


def _guarded(held: _Scope, vector: np.ndarray, floor: float, text: str) -> list[tuple[float, semantic_store.Entry]]:
    """The candidates from `floor` up that the guard passes, most similar first."""
    passed = []
    for similarity, entry in _candidates(held, vector, floor):
        refusal = check(entry.text, text)
        if refusal is None:
            passed.append((similarity, entry))
        else:
            SEMANTIC_LOOKUPS.labels("refused_" + refusal).inc()
    return passed


def _fresh(held: _Scope, versions: tuple[Any, Any]) -> bool:
    return held.versions == versions and time.monotonic() - held.loaded_at < settings.GATEWAY_SEMANTIC_RELOAD_SECONDS


def served(match: Match) -> None:
    """Note a hit (in the background): the org cap evicts the least recently hit entries first."""
    now = time.monotonic()
    entry_id = match.entry.id
    if now - _touched.get(entry_id, -_TOUCH_SECONDS) < _TOUCH_SECONDS:
        return
    if len(_touched) > 10_000:
        _touched.clear()
    _touched[entry_id] = now
    _spawn(asyncio.get_running_loop().run_in_executor(_writes, semantic_store.touch, [entry_id]))


def remember(p: Plan, ex: Exchange) -> None:
    """Add the request's question to its scope (in the background), pointing at the exact entry
    just stored. A scope already holding that exact entry is left as it is."""
    if p.vector is None:
        return
    held = _scopes.get((p.org_id, p.scope))
    if held is not None and ex.cache_key in held.cache_keys:
        return
    if len(_background) >= _MAX_PENDING_WRITES:  # the database is slow or away: it is only a cache
        return
    _spawn(asyncio.get_running_loop().create_task(_remember(p, ex.id, ex.cache_key, ex.opts)))


async def _remember(p: Plan, request_id: str, cache_key: str, opts: GatewayOptions) -> None:
    vector = p.vector.astype(np.float32).tobytes()
    try:
        entry_id, version = await asyncio.get_running_loop().run_in_executor(_writes, partial(
            semantic_store.add_entry, org_id=p.org_id, scope=p.scope, text=p.text, vector=vector,
            cache_key=cache_key, bucket_size=opts.cache_bucket_size, source_request_id=request_id,
            user_id=p.user_id, seconds=opts.cache_seconds))
    except Exception as exc:  # the database is down: the answer stays in the exact cache only
        log.warning("semantic cache entry not stored (%s: %s)", exc.__class__.__name__, exc)
        return
    key = (p.org_id, p.scope)
    held = _scopes.get(key)
    if held is None:
        return
    if version and version == (held.versions[0] or 0) + 1:
        # Nobody else changed the scope since it was loaded: add the entry here, no reload.
        entry = semantic_store.Entry(entry_id, p.text, vector, cache_key, opts.cache_bucket_size, request_id)
        held.entries.insert(0, entry)
        held.matrix = np.vstack([p.vector[None, :], held.matrix])[:semantic_store.SCOPE_CAP]
        del held.entries[semantic_store.SCOPE_CAP:]
        held.cache_keys.add(cache_key)
        held.versions = (version, held.versions[1])
    else:
        _scopes.pop(key, None)  # reloaded on its next lookup


def _candidates(held: _Scope, vector: np.ndarray, floor: float) -> list[tuple[float, semantic_store.Entry]]:
    if not held.entries:
        return []
    similarities = held.matrix @ vector
    above = np.flatnonzero(similarities >= floor)
    if len(above) > MAX_CANDIDATES:
        above = above[np.argpartition(-similarities[above], MAX_CANDIDATES)[:MAX_CANDIDATES]]
    ordered = above[np.argsort(-similarities[above], kind="stable")]
    return [(float(similarities[i]), held.entries[i]) for i in ordered]


# --- The scopes this process holds ----------------------------------------------------------

_scopes: OrderedDict[tuple[int, str], _Scope] = OrderedDict()
# The semantic cache's database work has threads of its own: while the database hangs, it must not
# hold the default pool's few threads, which the exact cache, rate limits and auth wait on. Reads
# and writes apart: a write waiting for a locked database (SQLite) must not hold up a scope's load.
_reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semantic-db-read")
_writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semantic-db-write")
_MAX_PENDING_WRITES = 200
_loading: dict[tuple[int, str], asyncio.Task] = {}
_touched: dict[int, float] = {}
_background: set[asyncio.Future] = set()


def _spawn(future: asyncio.Future) -> None:
    _background.add(future)
    future.add_done_callback(_background.discard)


async def _scope(p: Plan, versions: tuple[Any, Any]) -> _Scope:
    key = (p.org_id, p.scope)
    held = _scopes.get(key)
    if held is not None and _fresh(held, versions):
        _scopes.move_to_end(key)
        return held
    loading = _loading.get(key)
    if loading is None:
        loading = _loading[key] = asyncio.get_running_loop().create_task(_load(key, versions))
        loading.add_done_callback(lambda task: task.cancelled() or task.exception())  # retrieved: no warning
    if held is not None and held.versions == versions:
        # Nothing changed that the counters know of; the periodic reload (for changes made where no
        # counter is shared) runs in the background while this scope keeps serving.
        return held
    try:
        # A slow or unreachable database makes this request a miss, not a slow request; the load
        # goes on and serves the next one.
        return await asyncio.wait_for(asyncio.shield(loading), _LOAD_DEADLINE)
    except Exception as exc:
        log.warning("semantic cache scope not loaded (%s: %s); a miss", exc.__class__.__name__, exc)
        return _Scope(versions, 0.0, [], np.zeros((0, embedder.DIMENSIONS), dtype=np.float32))


async def _load(key: tuple[int, str], versions: tuple[Any, Any]) -> _Scope:
    try:
        entries = await asyncio.get_running_loop().run_in_executor(_reads, semantic_store.load_scope, *key)
    finally:
        _loading.pop(key, None)
    matrix = (np.frombuffer(b"".join(e.vector for e in entries), dtype=np.float32)
              .reshape(len(entries), embedder.DIMENSIONS))
    held = _Scope(versions, time.monotonic(), entries, matrix, {e.cache_key for e in entries})
    _scopes[key] = held
    _scopes.move_to_end(key)
    while len(_scopes) > settings.GATEWAY_SEMANTIC_MAX_SCOPES:
        _scopes.popitem(last=False)
    return held
