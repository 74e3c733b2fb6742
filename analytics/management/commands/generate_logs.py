"""Generate realistic request logs in bulk, for demos and the 1M-row measurements.

    manage.py generate_logs --org acme --count 1000000 --days 30

Models, providers, prices, latencies (log-normal), time to first token for
streamed calls, token counts, errors, cache hits, users (a long tail), sessions
with paths, custom properties and request names, spread over the last --days.
On PostgreSQL rows go in with COPY; elsewhere with bulk_create.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from analytics import clickhouse, rollups
from analytics.management.progress import progress_bar
from analytics.models import RequestLog
from analytics.pricing import cost_usd
from formats.ids import log_id
from orgs.models import Organization

MODELS = [  # provider, model, weight, median latency ms
    ("openai", "gpt-4o-mini", 40, 700),
    ("openai", "gpt-4o", 15, 1400),
    ("openai", "gpt-4.1-nano", 8, 450),
    ("anthropic", "claude-3-5-haiku-latest", 14, 900),
    ("anthropic", "claude-sonnet-4-20250514", 8, 2200),
    ("groq", "llama-3.1-8b-instant", 10, 250),
    ("mistral", "mistral-small-latest", 5, 800),
]
FEATURES = ["chat", "search", "summarize", "classify", "extract"]
NAMES = ["answer", "rewrite", "route", "title", "embed-query", ""]
PROMPTS = ["Summarize this support ticket", "Translate to French", "Write a haiku about", "Classify the intent of",
           "Extract the invoice total from", "Plan a weekend in"]
SESSION_SECONDS = 1800
STATUSES = [200] * 95 + [429, 429, 500, 400, 503]
COLUMNS = ["id", "org_id", "created_at", "provider", "method", "target_url", "path", "requested_model", "model",
           "status", "error", "cancelled", "streamed", "request_headers", "request_body", "response_body",
           "request_omitted", "response_omitted", "latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens",
           "cached_tokens", "cost_usd", "user_id", "session_id", "session_path", "session_name", "properties",
           "request_name", "cache_hit", "cache_match", "retries", "prompt_id", "source"]


class Command(BaseCommand):
    help = "Insert realistic request logs for an organization (with a progress bar)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--count", type=int, default=10_000)
        parser.add_argument("--days", type=float, default=7.0, help="Spread over the last N days")
        parser.add_argument("--users", type=int, default=2000)
        parser.add_argument("--batch", type=int, default=10_000)
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, **options):
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"No organization {options['org']!r}")
        rng = random.Random(options["seed"])
        prices = self._prices()
        total, batch_size = options["count"], options["batch"]
        end = datetime.now(timezone.utc)
        span = timedelta(days=options["days"]).total_seconds()
        started = time.monotonic()
        progress = progress_bar()
        done = 0
        # About 40 requests a session, each session within half an hour, as agent runs are.
        sessions = max(1, round(total / 40 / max(span / SESSION_SECONDS, 1)))
        while done < total:
            # Oldest first, as the log writer appends them: a time range then sits in
            # neighbouring pages of the table, like in production (random order would not).
            size = min(batch_size, total - done)
            slice_start = span * (1 - done / total)
            slice_end = span * (1 - (done + size) / total)
            ages = sorted((rng.uniform(slice_end, slice_start) for _ in range(size)), reverse=True)
            rows = [self._row(org.id, rng, prices, end, age, options["users"], sessions) for age in ages]
            self._insert(rows)
            done += len(rows)
            progress(done, total)
        sys.stderr.write("\n")
        self.stdout.write(f"Inserted {total:,} logs into {org.slug} in {time.monotonic() - started:.1f}s")
        if clickhouse.only():
            return  # ClickHouse's rollups view counted them as they went in
        if connection.vendor == "postgresql":
            # A bulk import leaves the planner's statistics and the visibility map behind
            # (docs/operations.md, "Analytics indexes"): without them it guesses 100 rows for a month.
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE analytics_requestlog")
        # The rows went in without the log writer: count them into the rollups the pages read.
        started = time.monotonic()
        rollups.rebuild(org.id, end - timedelta(days=options["days"]) - timedelta(days=1),
                        progress=progress_bar("rollups", "logs"))
        sys.stderr.write("\n")
        self.stdout.write(f"Rollups rebuilt in {time.monotonic() - started:.1f}s")
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE analytics_rollup")

    @staticmethod
    def _prices() -> dict[str, tuple[Decimal, Decimal] | None]:
        out = {}
        for provider, model, _, _ in MODELS:
            per_in = cost_usd(provider, model, 1_000_000, 0, None)
            per_out = cost_usd(provider, model, 0, 1_000_000, None)
            out[model] = None if per_in is None or per_out is None else (per_in / 1_000_000, per_out / 1_000_000)
        return out

    @staticmethod
    def _row(org_id, rng, prices, end, age_seconds, users, sessions) -> dict:
        provider, model, _, median = rng.choices(MODELS, weights=[m[2] for m in MODELS])[0]
        status = rng.choice(STATUSES)
        streamed = rng.random() < 0.35
        latency = min(rng.lognormvariate(math.log(median), 0.55), 60_000)
        prompt_tokens = int(rng.lognormvariate(math.log(350), 0.9)) + 5
        completion_tokens = int(rng.lognormvariate(math.log(180), 0.8)) + 1 if status == 200 else 0
        cache_hit = status == 200 and rng.random() < 0.08
        price = prices.get(model)
        cost = None
        if price is not None:
            cost = (price[0] * prompt_tokens + price[1] * completion_tokens).quantize(Decimal("0.0000000001"))
        in_session = rng.random() < 0.3
        user = f"user-{int(rng.paretovariate(1.2)) % users:04d}" if rng.random() < 0.85 else ""
        prompt = rng.choice(PROMPTS)
        answer = " ".join(rng.choice(["sure", "here", "is", "the", "answer", "with", "details", "and", "notes"])
                          for _ in range(12))
        created = end - timedelta(seconds=age_seconds)
        return {
            # Time-ordered ids, as the gateway makes them.
            "id": uuid.UUID(log_id(created.timestamp())), "org_id": org_id, "created_at": created,
            "provider": provider, "method": "POST",
            "target_url": "", "path": "/v1/chat/completions" if provider != "anthropic" else "/v1/messages",
            "requested_model": model, "model": model, "status": status,
            "error": "" if status == 200 else json.dumps({"error": {"message": f"upstream status {status}"}}),
            "cancelled": False, "streamed": streamed, "request_headers": {},
            "request_body": json.dumps({"model": model, "messages": [
                {"role": "user", "content": f"{prompt} #{rng.randint(1, 99999)}"}]}),
            "response_body": json.dumps({"model": model, "choices": [
                {"message": {"role": "assistant", "content": answer}}]}) if status == 200 else "",
            "request_omitted": False, "response_omitted": False,
            "latency_ms": round(latency, 3), "ttft_ms": round(latency * rng.uniform(0.1, 0.4), 3) if streamed else None,
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "cached_tokens": prompt_tokens // 2 if rng.random() < 0.1 else None,
            "cost_usd": cost, "user_id": user,
            "session_id": f"{int(age_seconds // SESSION_SECONDS):05d}-{rng.randrange(sessions):04d}" if in_session else "",
            "session_path": rng.choice(["/", "/plan", "/plan/search", "/plan/search/rank", "/answer"]) if in_session else "",
            "session_name": "Agent run" if in_session else "",
            "properties": {"Feature": rng.choice(FEATURES), "Env": "prod" if rng.random() < 0.9 else "staging"},
            "request_name": rng.choice(NAMES), "cache_hit": cache_hit,
            "cache_match": "exact" if cache_hit else "", "retries": 1 if status == 429 else 0,
            "prompt_id": "", "source": "proxy",
        }

    @staticmethod
    def _insert(rows: list[dict]) -> None:
        if clickhouse.enabled():  # the log store the pages read (and, with CLICKHOUSE_ONLY=0, SQL too)
            from analytics.clickhouse import store

            store.insert([RequestLog(**row) for row in rows])
            if clickhouse.only():
                return
        if connection.vendor == "postgresql":
            with transaction.atomic(), connection.cursor() as cursor:
                with cursor.cursor.copy(f"COPY analytics_requestlog ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([json.dumps(row[c]) if c in ("request_headers", "properties") else row[c]
                                        for c in COLUMNS])
            return
        RequestLog.objects.bulk_create([RequestLog(**row) for row in rows], batch_size=2000)
