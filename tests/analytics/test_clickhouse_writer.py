"""The writer's native columnar insert stores every kind of value a log carries as it was sent."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from django.test import override_settings

from analytics.clickhouse import rows, store
from analytics.writer import build_log, write_batch
from tests.base import ClickHouseTestCase


class NativeInsertTests(ClickHouseTestCase):
    clickhouse_empty_each_test = True

    def test_values_come_back_as_they_were_sent(self):
        source = uuid.uuid4()
        record = {"id": str(uuid.uuid4()), "org_id": self.org.id, "created_at": time.time() - 60.123456,
                  "provider": "openai", "model": "gpt-4o-mini", "status": 200, "latency_ms": float("nan"),
                  "ttft_ms": 12.5, "cost_usd": 0.0012345, "prompt_tokens": 10, "completion_tokens": None,
                  "user_id": None, "properties": {"Plan": 3, "Feature": "chat", "Gone": None},
                  "request_headers": {"x-a": "1"}, "prompt_variables": {"name": "Ana"},
                  "source_request_id": str(source), "cache_match": "semantic", "similarity": 0.97,
                  "request_body": "caf\u00e9 \ud800", "streamed": True}
        (log,) = store.insert([build_log(record)])
        got = rows.get(self.org.pk, log.id)
        assert got.created_at == log.created_at
        assert (got.latency_ms, got.ttft_ms, got.completion_tokens, got.user_id) == (None, 12.5, None, "")
        assert got.cost_usd == Decimal("0.0012345")
        assert got.properties == {"Plan": 3, "Feature": "chat", "Gone": None}
        assert (got.request_headers, got.prompt_variables) == ({"x-a": "1"}, {"name": "Ana"})
        assert got.source_request_id == source and got.streamed is True and got.similarity == 0.97
        assert got.request_body == "caf\u00e9 ?"  # a lone surrogate is not UTF-8: replaced
        assert store.insert([build_log(record)]) == []  # stored already: left out

    def test_clickhouse_only_writes_mark_the_key_used(self):
        key, _ = self.make_key()
        with override_settings(CLICKHOUSE_ONLY=True):
            write_batch([{"id": str(uuid.uuid4()), "org_id": self.org.id, "api_key_id": key.id,
                          "created_at": time.time(), "provider": "openai", "status": 200}])
        key.refresh_from_db()
        assert key.last_used_at is not None
