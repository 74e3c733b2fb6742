"""Building request logs with known values for metrics tests."""

import random
import statistics
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from analytics import rollups
from analytics.models import RequestLog


def make_logs(org, n: int = 60, seed: int = 7, **overrides) -> list[RequestLog]:
    """n logs in the last hour with varied latency, tokens, cost, status, users and properties."""
    rng = random.Random(seed)
    now = timezone.now()
    logs = []
    for i in range(n):
        values = dict(
            org=org,
            created_at=now - timedelta(minutes=rng.randint(1, 55), seconds=rng.randint(0, 59)),
            provider=rng.choice(["openai", "anthropic"]),
            model=rng.choice(["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku"]),
            status=rng.choice([200] * 8 + [429, 500]),
            latency_ms=round(rng.uniform(20, 3000), 3),
            ttft_ms=None if i % 5 == 0 else round(rng.uniform(5, 400), 3),
            prompt_tokens=rng.randint(1, 2000),
            completion_tokens=rng.randint(0, 800),
            cost_usd=None if i % 9 == 0 else Decimal(rng.randint(1, 100_000)) / Decimal(10_000_000),
            user_id=rng.choice(["u1", "u2", "u3", ""]),
            session_id=rng.choice(["s1", "s2", ""]),
            properties={"Feature": rng.choice(["chat", "search"]), "Env": "prod"},
            cache_hit=rng.random() < 0.2,
        )
        values.update(overrides)
        logs.append(RequestLog(**values))
    return store(logs)


def create_log(**values) -> RequestLog:
    """One log stored as the log writer stores it (with its rollups)."""
    return store([RequestLog(**values)])[0]


def store(logs: list[RequestLog]) -> list[RequestLog]:
    """Store logs as the log writer does: the rows and their rollups in one transaction."""
    logs = list(logs)
    with transaction.atomic():
        RequestLog.objects.bulk_create(logs)
        rollups.add(logs)
    return logs


def pct(values, fraction: float):
    """percentile_cont, computed independently of the code under test."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return values[0] if fraction == 0 else cuts[round(fraction * 100) - 1]


def is_error(log) -> bool:
    return log.status >= 400 or log.status < 200


def expected_metrics(logs) -> dict:
    count = len(logs)
    errors = sum(1 for log in logs if is_error(log))
    return {
        "count": count,
        "errors": errors,
        "error_rate": errors / count if count else 0.0,
        "cost_usd": float(sum((log.cost_usd for log in logs if log.cost_usd is not None), Decimal(0))),
        "prompt_tokens": sum(log.prompt_tokens or 0 for log in logs),
        "completion_tokens": sum(log.completion_tokens or 0 for log in logs),
        "cache_hits": sum(1 for log in logs if log.cache_hit),
        "latency_p50_ms": pct([log.latency_ms for log in logs], 0.5),
        "latency_p95_ms": pct([log.latency_ms for log in logs], 0.95),
        "latency_p99_ms": pct([log.latency_ms for log in logs], 0.99),
        "ttft_p50_ms": pct([log.ttft_ms for log in logs], 0.5),
    }


PERCENTILE_NAMES = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms")


def assert_metrics(actual: dict, logs) -> None:
    expected = expected_metrics(logs)
    for name, value in expected.items():
        if value is None:
            assert actual[name] is None, name
        elif name in PERCENTILE_NAMES:
            # Read from the rollups' sketches: within 1 % of the exact value (analytics.sketch).
            assert abs(actual[name] - value) <= abs(value) * 0.01 + 0.001, (name, actual[name], value)
        elif isinstance(value, float):
            assert abs(actual[name] - value) <= max(1e-9, abs(value) * 1e-6) + 0.001, (name, actual[name], value)
        else:
            assert actual[name] == value, (name, actual[name], value)
