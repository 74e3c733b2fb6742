"""The gateway's Prometheus counters (served by heliconeproj/metrics.py at `/metrics`).

The gateway pays one counter increment and one histogram observation per
request (a cache or rate-limit counter only when those features are used).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
SEMANTIC_LOOKUPS = Counter(
    "helicone_gateway_semantic_cache_lookups", "Semantic cache lookups and candidates, by result (hit, shadow, "
    "miss; refused_<rule> for a candidate the guard refused; dangling for one whose answer had expired)",
    ["result"])
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
