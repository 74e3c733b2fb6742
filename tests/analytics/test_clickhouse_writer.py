"""The writer's native columnar insert stores every kind of value a log carries as it was sent,
from RequestLogs and, ClickHouse alone, straight from the queued records."""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal

from django.test import TestCase, override_settings

from analytics.clickhouse import client, rows, store
from analytics.writer import build_log, build_logs, write_batch
from tests.analytics.test_rollups import records
from tests.base import ClickHouseTestCase


class NativeInsertTests(ClickHouseTestCase):
    clickhouse_empty_each_test = True

    def test_values_come_back_as_they_were_sent(self):
        self.check_values_come_back(lambda record: store.insert([build_log(record)]))

    def test_values_written_from_records_alone_come_back_as_they_were_sent(self):
        def write(record):
            with override_settings(CLICKHOUSE_ONLY=True):
                return list(write_batch([record]))

        self.check_values_come_back(write)

    def check_values_come_back(self, write):
        source = uuid.uuid4()
        record = {"id": str(uuid.uuid4()), "org_id": self.org.id, "created_at": time.time() - 60.123456,
                  "provider": "openai", "model": "gpt-4o-mini", "status": 200, "latency_ms": float("nan"),
                  "ttft_ms": 12.5, "cost_usd": 0.0012345, "prompt_tokens": 10, "completion_tokens": None,
                  "user_id": None, "properties": {"Plan": 3, "Feature": "chat", "Gone": None},
                  "request_headers": {"x-a": "1"}, "prompt_variables": {"name": "Ana"},
                  "source_request_id": str(source), "cache_match": "semantic", "similarity": 0.97,
                  "request_body": "caf\u00e9 \ud800", "streamed": True}
        (log,) = write(record)
        got = rows.get(self.org.pk, log.id)
        assert got.created_at == log.created_at
        assert (got.latency_ms, got.ttft_ms, got.completion_tokens, got.user_id) == (None, 12.5, None, "")
        assert got.cost_usd == Decimal("0.0012345")
        assert got.properties == {"Plan": 3, "Feature": "chat", "Gone": None}
        assert (got.request_headers, got.prompt_variables) == ({"x-a": "1"}, {"name": "Ana"})
        assert got.source_request_id == source and got.streamed is True and got.similarity == 0.97
        assert got.request_body == "caf\u00e9 ?"  # a lone surrogate is not UTF-8: replaced
        assert write(record) == []  # stored already: left out

    def test_clickhouse_only_writes_mark_the_key_used(self):
        key, _ = self.make_key()
        with override_settings(CLICKHOUSE_ONLY=True):
            write_batch([{"id": str(uuid.uuid4()), "org_id": self.org.id, "api_key_id": key.id,
                          "created_at": time.time(), "provider": "openai", "status": 200}])
        key.refresh_from_db()
        assert key.last_used_at is not None

    def test_a_batch_some_of_whose_logs_are_stored_writes_the_others_with_their_own_values(self):
        batch = records(self.org, 30, seed=21)
        with override_settings(CLICKHOUSE_ONLY=True):
            assert len(write_batch(batch[::3])) == 10
            written = write_batch(batch)  # a replay: two thirds of it new
        assert sorted(str(log.id) for log in written) == sorted(record["id"] for n, record in enumerate(batch) if n % 3)
        assert client().query("SELECT count(), sum(prompt_tokens) FROM request_logs").result_rows == [
            (30, sum(record["prompt_tokens"] for record in batch))]
        for record in batch[1::3]:
            got = rows.get(self.org.pk, uuid.UUID(record["id"]))
            assert (got.user_id, got.model, got.prompt_tokens) == (record["user_id"], record["model"],
                                                                    record["prompt_tokens"])

    def test_malformed_records_are_dropped_and_said_so_the_rest_written(self):
        good = {"id": str(uuid.uuid4()).upper(), "org_id": self.org.id, "created_at": int(time.time()) - 30,
                "provider": "openai", "model": "gpt-4o-mini", "status": 200, "prompt_tokens": 1000,
                "completion_tokens": 500}
        bad = [{"org_id": self.org.id, "created_at": time.time()},
               {"id": "not-a-uuid", "org_id": self.org.id, "created_at": time.time()},
               {"id": str(uuid.uuid4()), "org_id": self.org.id},
               {"id": str(uuid.uuid4()), "org_id": self.org.id, "created_at": "yesterday"},
               {"id": str(uuid.uuid4()), "org_id": self.org.id, "created_at": time.time(), "source_request_id": "x"},
               {"id": str(uuid.uuid4()), "org_id": 987654, "created_at": time.time()}]  # no such org
        with override_settings(CLICKHOUSE_ONLY=True), self.assertLogs("analytics", "ERROR") as logged:
            (written,) = write_batch([bad[0], good, *bad[1:]])
        assert len(logged.records) == len(bad)
        assert str(written.id) == good["id"].lower()
        got = rows.get(self.org.pk, written.id)
        # Priced by the writer as a RequestLog would be, at the second it was sent.
        assert got.cost_usd == build_log(good).cost_usd and got.cost_usd > 0
        assert got.created_at == datetime.fromtimestamp(good["created_at"], timezone.utc)
        assert client().query("SELECT count() FROM request_logs").result_rows == [(1,)]


class RecordColumnsTests(TestCase):
    """ClickHouse alone, the writer makes the insert's columns straight from the queued records:
    they must be those the RequestLogs built from the records give, value for value."""

    def test_records_make_the_columns_their_request_logs_make(self):
        from orgs.models import Organization

        org = Organization.objects.create(slug="columns", name="Columns")
        batch = records(org, 400, seed=5, hours=30)
        rng = random.Random(3)
        for record in batch[::7]:  # what other writers' records carry, or lack
            record.update(properties={"Plan": 3, "Beta": True, "Gone": None, "Nested": {"a": [1]}},
                          request_headers={"x-a": "1"}, cache_write_tokens=rng.choice([None, 40]),
                          ttft_ms=float("nan"), source_request_id=str(uuid.uuid4()), api_key_id=7)
        for record in batch[::11]:
            for name in ("provider", "status", "properties", "streamed", "user_id"):
                record.pop(name, None)
            record["cost_usd"] = rng.choice([None, "0.0000012345", 0.25, Decimal("1.5")])
        batch[0].pop("model")  # the first record lacks a field later ones have
        batch[1]["id"] = uuid.UUID(batch[1]["id"])
        batch[2]["id"] = batch[2]["id"].upper()
        batch[3]["created_at"] = int(batch[3]["created_at"])
        batch[4]["extra"] = "a field no column has"
        kept, ids, ticks = store.well_formed(batch)
        assert len(kept) == len(batch)
        assert self.comparable(store.record_columns(kept, ids, ticks)) == \
            self.comparable(store.columns_of(build_logs(batch)))

    @staticmethod
    def comparable(columns):
        """The values as the server stores them: ids and times whichever way they were given."""
        out = dict(zip(store.COLUMNS, columns))
        for name in ("id", "source_request_id"):
            out[name] = [None if value is None else str(uuid.UUID(str(value))) for value in out[name]]
        out["created_at"] = [value if isinstance(value, int) else
                             int(value.timestamp()) * 1_000_000 + value.microsecond for value in out["created_at"]]
        out["cost_usd"] = [None if value is None else Decimal(str(value)) for value in out["cost_usd"]]
        return out

    def test_a_records_time_is_the_microsecond_a_request_log_has(self):
        rng = random.Random(11)
        for _ in range(20_000):
            moment = rng.uniform(1.6e9, 1.9e9) if rng.random() < 0.5 else rng.randrange(16, 19) * 1e8 + rng.random()
            made = datetime.fromtimestamp(moment, timezone.utc)
            assert store.ticks_of(moment) == int(made.timestamp()) * 1_000_000 + made.microsecond, moment
