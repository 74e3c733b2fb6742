"""Prometheus metrics: what the gateway counts, and the text `/metrics` serves.

The gateway pays one counter increment and one histogram observation per
request (a cache or rate-limit counter only when those features are used).
Under `make prod` every process writes its counters to files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode), so a scrape
of any one process reports the sum of all of them. The log queue figures are
read when scraped: from the Redis stream (shared by every machine) or from
this process's in-memory queue in the embedded default.
"""

from __future__ import annotations

import os
import time

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from redis import RedisError

REQUESTS = Counter(
    "helicone_gateway_requests", "Requests answered by the gateway, by provider and HTTP status "
    "(status 0: the client went away before an answer)", ["provider", "status"],
)
LATENCY = Histogram(
    "helicone_gateway_request_duration_seconds", "Time from a request's arrival to the end of its answer "
    "(upstream time included; a stream ends with its last chunk)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
CACHE_LOOKUPS = Counter("helicone_gateway_cache_lookups", "Response cache lookups, by result", ["result"])
RATE_LIMIT_REFUSALS = Counter("helicone_gateway_rate_limit_refusals", "Requests refused (429) by a rate-limit policy")

_CACHE_HIT = CACHE_LOOKUPS.labels("hit")
_CACHE_MISS = CACHE_LOOKUPS.labels("miss")
_request_counters: dict[tuple[str, int], object] = {}


def observe_request(provider: str, status: int, seconds: float, cache_read: bool, cache_hit: bool) -> None:
    """Count one answered request (the gateway calls this once per request)."""
    counter = _request_counters.get((provider, status))
    if counter is None:
        counter = _request_counters[(provider, status)] = REQUESTS.labels(provider, str(status))
    counter.inc()
    LATENCY.observe(seconds)
    if cache_read:
        (_CACHE_HIT if cache_hit else _CACHE_MISS).inc()


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


_redis_client = None


def _redis():
    global _redis_client
    if _redis_client is None:
        import redis

        _redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _redis_client


def log_queue_figures() -> tuple[float, float]:
    """(records or stream entries waiting to be written, seconds the oldest has waited).

    With REDIS_URL: entries in the log stream (each holds the records one gateway
    process gathered in a few milliseconds; written entries are deleted), and the
    age of the oldest one from its id. Embedded: records in this process's queue,
    and how long ago the oldest record of the batch being written was created."""
    if settings.REDIS_URL:
        pipe = _redis().pipeline(transaction=False)
        pipe.xlen(settings.LOG_STREAM_KEY)
        pipe.xrange(settings.LOG_STREAM_KEY, count=1)
        depth, oldest = pipe.execute()
        lag = 0.0
        if oldest:
            millis = int(oldest[0][0].split(b"-")[0])
            lag = max(0.0, time.time() - millis / 1000)
        return float(depth), lag
    from gateway.logqueue import get_queue

    queue = get_queue()
    writer = getattr(queue, "writer", None)
    since = getattr(writer, "writing_since", None)
    return float(queue.pending()), max(0.0, time.time() - since) if since else 0.0


class _LogQueueCollector:
    def __init__(self, depth: float, lag: float):
        self.depth, self.lag = depth, lag

    def collect(self):
        yield GaugeMetricFamily(
            "helicone_log_queue_depth", "Log records waiting in this process's queue (embedded), or entries "
            "waiting in the Redis log stream (each entry is a few milliseconds of one process's records)",
            value=self.depth,
        )
        yield GaugeMetricFamily(
            "helicone_log_writer_lag_seconds", "How long the oldest log waiting to be written has waited "
            "(0 when the writers are caught up)", value=self.lag,
        )


def render() -> tuple[bytes, str]:
    """The exposition text of every metric. Blocking (files, Redis): call it off the event loop."""
    extra = CollectorRegistry(auto_describe=False)
    try:
        extra.register(_LogQueueCollector(*log_queue_figures()))
    except (RedisError, OSError):  # Redis away (/readyz says so): the other figures are still worth scraping
        pass
    if _multiprocess():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        own = generate_latest(registry)
    else:
        own = generate_latest(REGISTRY)
    return own + generate_latest(extra), CONTENT_TYPE_LATEST
