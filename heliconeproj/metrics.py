"""Prometheus: the text `/metrics` serves (the gateway's counters are in gateway/metrics.py).

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
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from redis import RedisError

import gateway.metrics  # noqa: F401  (registers the gateway's counters, also where no request came yet)


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
    from analytics.logqueue import get_queue

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
