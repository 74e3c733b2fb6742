"""Rollups (issue #17): whatever writes, rewrites or deletes logs leaves the rollups equal to
what the raw rows give, and the pages and APIs that read them answer what the raw rows answer
(percentiles within 1 %)."""

import io
import json
import random
import time
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from importlib import import_module

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from analytics import actions, lifecycle, metrics, rollup_reads, rollups
from analytics.models import Rollup, RollupCoverage
from analytics.queries import Selection
from analytics.writer import write_batch
from tests.base import BaseTestCase

MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku-latest"]


def records(org, n: int, *, seed: int, hours: float = 3.0, users: int = 12, **overrides) -> list[dict]:
    """Log-writer records (what the gateway queues) spread over the last `hours`."""
    rng = random.Random(seed)
    now = time.time()
    out = []
    for _ in range(n):
        status = rng.choice([200] * 17 + [429, 500, 0])
        model = rng.choice(MODELS)
        record = {
            "id": str(uuid.uuid4()), "org_id": org.id, "created_at": now - rng.uniform(0, hours * 3600),
            "provider": "anthropic" if model.startswith("claude") else "openai", "model": model,
            "requested_model": model, "status": status, "streamed": rng.random() < 0.4,
            "latency_ms": round(rng.lognormvariate(6.5, 0.6), 3),
            "ttft_ms": round(rng.uniform(20, 400), 3) if rng.random() < 0.5 else None,
            "prompt_tokens": rng.randint(5, 3000), "completion_tokens": rng.randint(0, 900) if status == 200 else None,
            "cached_tokens": rng.choice([None, 0, 128]),
            "user_id": rng.choice([f"user-{i}" for i in range(users)] + [""]),
            "session_id": rng.choice(["", "s-1", "s-2", "s-3"]),
            "request_name": rng.choice(["", "answer", "title"]),
            "properties": {"Feature": rng.choice(["chat", "search"]), "Plan": rng.choice(["free", "pro", 3])},
            "cache_hit": status == 200 and rng.random() < 0.15,
        }
        if rng.random() < 0.1:
            record["cost_usd"] = None  # unpriced
        record.update(overrides)
        out.append(record)
    return out


def snapshot(org) -> dict:
    """The org's rollups, rows with no logs left out (a rebuild does not make them)."""
    out = {}
    for row in Rollup.objects.filter(org=org, requests__gt=0):
        latency = rollups.Sketch.from_json(json.loads(row.latency))
        ttft = rollups.Sketch.from_json(json.loads(row.ttft))
        key = (row.grain, rollups.utc(row.bucket), row.dim, row.overflow, row.value)
        out[key] = ([getattr(row, name) for name in rollups.SCALARS], latency.buckets, latency.zeros, latency.count,
                    ttft.buckets, ttft.count, row.first_at, row.last_at)
    return out


class RollupsEqualTheRowsTests(BaseTestCase):
    def assert_exact(self):
        """The rollups as maintained equal the rollups rebuilt from the rows."""
        kept = snapshot(self.org)
        rollups.rebuild(self.org.id)
        rebuilt = snapshot(self.org)
        assert kept.keys() == rebuilt.keys(), (set(kept) ^ set(rebuilt))
        for key in kept:
            assert kept[key] == rebuilt[key], key
        assert kept, "no rollups at all"

    def test_every_change_of_the_logs_keeps_them_exact(self):
        batch = records(self.org, 400, seed=1)
        write_batch(batch)
        self.assert_exact()
        write_batch(batch[:150] + records(self.org, 50, seed=2))  # a retried batch, with new records
        self.assert_exact()
        key, _ = self.make_key()
        body = {"providerRequest": {"url": "https://api.openai.com/v1/chat/completions",
                                    "json": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                                    "meta": {"Helicone-User-Id": "user-1", "Helicone-Property-Feature": "chat"}},
                "providerResponse": {"status": 200, "json": {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}},
                "timing": {"startTime": {"seconds": int(time.time()) - 5, "milliseconds": 0},
                           "endTime": {"seconds": int(time.time()) - 4, "milliseconds": 250}}}
        manual = actions.log_manual(self.org, key, body)
        self.assert_exact()
        actions.set_property(self.org, manual.id, "Feature", "search")
        actions.set_property(self.org, batch[0]["id"], "Plan", "enterprise")
        actions.set_feedback(self.org, manual, False)
        actions.set_scores(self.org, manual, {"accuracy": 0.5})
        self.assert_exact()
        lifecycle.erase_user(self.org, "user-3", via="test", batch_size=37)
        self.assert_exact()
        self.org.retention_days = 1
        self.org.save()
        write_batch(records(self.org, 120, seed=3, hours=24 * 5))
        plan = lifecycle.purge_plan(self.org)
        assert plan.logs.exists()
        lifecycle.purge(plan, batch_size=50)
        self.assert_exact()
        # A purge drops the buckets it emptied, not only their counts (a week that still holds kept
        # logs stays).
        kept = Rollup.objects.filter(org=self.org).exclude(grain=rollups.ALLTIME).values_list("grain", "bucket")
        assert kept and all(bucket + rollups.GRAINS[grain] > plan.cutoff - timedelta(days=1) for grain, bucket in kept)
        assert Rollup.objects.filter(org=self.org, grain="w").exists()
        # Sessions keep their all-time rows while logs of them remain; an emptied one goes.
        alltime = Rollup.objects.filter(org=self.org, grain=rollups.ALLTIME)
        assert alltime.exists() and not alltime.filter(requests__lte=0).exists()

    def test_values_beyond_the_cap_stay_exact_and_are_read_from_the_rows(self):
        caps = {"h": 3, "d": 4, "w": 4}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(rollups, "CAPS", caps)
            patch.setattr(rollups, "UNCAPPED", set())
            write_batch(records(self.org, 300, seed=4, hours=2, users=15))
            assert Rollup.objects.filter(org=self.org, dim="user", overflow=True).exists()
            selection = Selection(self.org, timezone.now() - timedelta(hours=3), timezone.now())
            by_user = metrics.grouped(selection, "user", exclude_empty=True, with_percentiles=False)
            raw = metrics.grouped(selection.qs, "user", exclude_empty=True, with_percentiles=False)
            assert by_user == raw
            assert len(by_user) == 15
            lifecycle.erase_user(self.org, "user-7", via="test")
            after = metrics.grouped(selection, "user", exclude_empty=True, with_percentiles=False)
            assert after == metrics.grouped(selection.qs, "user", exclude_empty=True, with_percentiles=False)
            assert "user-7" not in {row["key"] for row in after}
            # Every dimension's rows of a bucket add up to the bucket's total, folded values included.
            for grain, bucket, requests in Rollup.objects.filter(org=self.org, dim="", grain__in="hd").values_list(
                    "grain", "bucket", "requests"):
                per_user = Rollup.objects.filter(org=self.org, dim="user", grain=grain, bucket=bucket)
                assert sum(per_user.values_list("requests", flat=True)) == requests


class WeeksTests(BaseTestCase):
    def test_a_week_whose_values_overflowed_is_read_from_its_days(self):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(rollups, "CAPS", {"h": 1_000, "d": 1_000, "w": 4})
            patch.setattr(rollups, "UNCAPPED", set())
            write_batch(records(self.org, 600, seed=12, hours=24 * 16, users=15))
            assert Rollup.objects.filter(org=self.org, dim="user", grain="w", overflow=True).exists()
            assert not Rollup.objects.filter(org=self.org, dim="user", grain="d", overflow=True).exists()
            now = timezone.now()
            selection = Selection(self.org, now - timedelta(days=16), now)
            p = rollup_reads.plan(selection, group_dim="user")
            grains = p.grains("user")
            assert grains == ("w", "d", "h")
            pieces, raw = rollup_reads.split(p.start, p.end, grains)
            assert any(grain == "w" for grain, _, _ in pieces)
            refined, refined_raw = rollup_reads._without_overflow(p, "user", pieces, raw, grains, value=None)
            # The overflowing weeks are read from their days, not from the raw rows.
            assert refined_raw == raw
            assert not any(grain == "w" for grain, _, _ in refined)
            by_user = metrics.grouped(selection, "user", exclude_empty=True)
            raw_rows = metrics.grouped(selection.qs, "user", exclude_empty=True)
            assert [row["key"] for row in by_user] == [row["key"] for row in raw_rows]
            for a, b in zip(by_user, raw_rows):
                for name, value in b.items():
                    if name != "key":
                        close(a[name], value, name)

    def test_weeks_start_on_monday_and_sessions_keep_none(self):
        write_batch(records(self.org, 200, seed=13, hours=24 * 10))
        weeks = Rollup.objects.filter(org=self.org, grain="w")
        assert weeks.exists()
        starts = weeks.values_list("bucket", flat=True)
        assert {bucket.astimezone(dt_timezone.utc).weekday() for bucket in starts} == {0}
        assert not weeks.filter(dim="session").exists()
        days = Rollup.objects.filter(org=self.org, grain="d", dim="")
        weekly = weeks.filter(dim="").values_list("requests", flat=True)
        assert sum(weekly) == sum(days.values_list("requests", flat=True))


    def test_a_range_until_now_reads_the_open_hour_whole(self):
        write_batch(records(self.org, 300, seed=16, hours=5, users=20))
        now = timezone.now()
        selection = Selection(self.org, now - timedelta(hours=3), now)
        p = rollup_reads.plan(selection, group_dim="model")
        assert p.open_end
        pieces, raw = rollup_reads.split(p.start, p.end, p.grains("model"))
        assert all(hi <= now - timedelta(hours=2) for _, hi in raw)  # only the start's partial hour is raw
        for group in ("model", "user"):
            ours = metrics.grouped(selection, group, limit=10)
            theirs = metrics.grouped(selection.qs, group, limit=10)
            assert [row["key"] for row in ours] == [row["key"] for row in theirs]
            for a, b in zip(ours, theirs):
                for name, value in b.items():
                    if name != "key":
                        close(a[name], value, name)
        # An end in the past is read exactly: its partial hour from the raw rows.
        past = Selection(self.org, now - timedelta(hours=3), now - timedelta(minutes=30))
        assert not rollup_reads.plan(past).open_end
        close(metrics.summary(past)["count"], metrics.summary(past.qs)["count"], "count")

    def test_the_migration_builds_the_weeks_the_writer_keeps(self):
        from django.apps import apps

        build_weeks = import_module("analytics.migrations.0011_rollup_weeks").build_weeks
        write_batch(records(self.org, 400, seed=14, hours=24 * 12))
        write_batch(records(self.other_org, 50, seed=15, hours=24 * 3))
        fields = ("bucket", "dim", "overflow", "value", "requests", "errors", "cost_usd", "prompt_tokens", "first_at",
                  "last_at", "latency", "ttft")
        weeks = Rollup.objects.filter(grain="w").order_by("org_id", "bucket", "dim", "value")
        written = list(weeks.values_list("org_id", *fields))
        assert len(written) > 20
        weeks.delete()
        build_weeks(apps, None)
        rebuilt = list(weeks.values_list("org_id", *fields))
        assert [row[:-2] for row in rebuilt] == [row[:-2] for row in written]
        for ours, theirs in zip(rebuilt, written):
            for sketch_ours, sketch_theirs in zip(map(json.loads, ours[-2:]), map(json.loads, theirs[-2:])):
                total_ours, total_theirs = sketch_ours.pop("s", 0), sketch_theirs.pop("s", 0)
                assert total_ours == pytest.approx(total_theirs, rel=1e-12)  # added up in another order
                assert sketch_ours == sketch_theirs


def close(actual, expected, name):
    if expected is None:
        assert actual is None, name
    elif name.startswith(("latency_", "ttft_")):
        assert abs(actual - expected) <= abs(expected) * 0.01, (name, actual, expected)
    elif isinstance(expected, (str, bool, datetime)):
        assert actual == expected, name
    else:
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-9), (name, actual, expected)


class RollupReadsTests(BaseTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        write_batch(records(cls.org, 3000, seed=9, hours=24 * 8, users=40))
        write_batch(records(cls.other_org, 200, seed=10, hours=24))

    def test_the_aggregates_equal_the_raw_rows(self):
        now = timezone.now()
        for span in (timedelta(minutes=7), timedelta(hours=1), timedelta(hours=24), timedelta(days=7),
                     timedelta(days=30)):
            selection = Selection(self.org, now - span, now)
            summary = metrics.summary(selection)
            raw = metrics.summary(selection.qs)
            assert summary["count"] > 0 or span < timedelta(hours=1)
            for name, value in raw.items():
                close(summary[name], value, name)
            for group in ("model", "user", "property:Plan", "provider"):
                ours = metrics.grouped(selection, group, limit=10)
                theirs = metrics.grouped(selection.qs, group, limit=10)
                # Property values as text, as PostgreSQL returns them (SQLite's JSON gives 3 for 3).
                assert [row["key"] for row in ours] == [str(row["key"]) for row in theirs], group
                for a, b in zip(ours, theirs):
                    for name, value in b.items():
                        if name == "key":
                            continue
                        close(a[name], value, name)
            interval = metrics.pick_interval(span)
            series = metrics.timeseries(selection, interval, now - span, now)
            raw_series = metrics.timeseries(selection.qs, interval, now - span, now)
            assert [b["time"] for b in series] == [b["time"] for b in raw_series]
            for a, b in zip(series, raw_series):
                for name, value in b.items():
                    close(a[name], value, name)

    def test_one_filter_at_a_time_is_read_from_the_rollups(self):
        now = timezone.now()
        for filters, properties in (({"model": "gpt-4o"}, {}), ({"user_id": "user-2"}, {}), ({"status": 429}, {}),
                                    ({"cache_hit": True}, {}), ({}, {"Plan": "pro"}), ({}, {"Feature": "chat"})):
            selection = Selection(self.org, now - timedelta(hours=30), now, filters, properties)
            from analytics import rollup_reads

            assert rollup_reads.plan(selection) is not None
            ours, raw = metrics.summary(selection), metrics.summary(selection.qs)
            for name, value in raw.items():
                close(ours[name], value, name)

    def test_the_pages_show_what_the_rows_hold(self):
        self.client.force_login(self.alice)
        for range_key in ("1h", "24h", "7d", "30d"):
            response = self.client.get(f"/o/alice-org/?range={range_key}")
            assert response.status_code == 200
            start = timezone.now() - {"1h": timedelta(hours=1), "24h": timedelta(hours=24),
                                      "7d": timedelta(days=7), "30d": timedelta(days=30)}[range_key]
            raw = metrics.summary(Selection(self.org, start).qs)
            # Requests logged between the page and this line would differ; none are.
            assert response.context["totals"]["count"] == raw["count"]
            assert response.context["totals"]["cost_usd"] == pytest.approx(raw["cost_usd"])
            users = self.client.get(f"/o/alice-org/users/?range={range_key}").context["users"]
            raw_users = (Selection(self.org, start).qs.exclude(user_id="").values("user_id").distinct().count())
            assert len(users) == raw_users
        sessions = self.client.get("/o/alice-org/sessions/?range=30d").context["sessions"]
        assert {s["session_id"] for s in sessions} == {"s-1", "s-2", "s-3"}
        for session in sessions:
            logs = Selection(self.org, timezone.now() - timedelta(days=30), None,
                             {"session_id": session["session_id"]}).qs
            assert session["requests"] == logs.count()
            assert session["first"] == min(log.created_at for log in logs)
            assert session["last"] == max(log.created_at for log in logs)
            assert session["cost"] == sum((log.cost_usd for log in logs if log.cost_usd is not None), Decimal(0))


class RebuildTests(BaseTestCase):
    def test_an_org_with_logs_from_before_rollups_reads_raw_rows_until_rebuilt(self):
        write_batch(records(self.org, 200, seed=5, hours=24 * 3))
        Rollup.objects.filter(org=self.org).delete()
        RollupCoverage.objects.filter(org=self.org).update(covered_from=None)  # as the migration leaves it
        selection = Selection(self.org, timezone.now() - timedelta(days=7), timezone.now())
        from analytics import rollup_reads

        assert rollup_reads.summary(selection) is None
        assert metrics.summary(selection)["count"] == 200  # from the rows meanwhile
        out, err = io.StringIO(), io.StringIO()
        call_command("rebuild_rollups", "--org", "alice-org", stdout=out, stderr=err)
        assert "alice-org: 200 log(s) counted" in out.getvalue()
        assert rollup_reads.summary(selection)["count"] == 200
        since = (timezone.now() - timedelta(days=1)).date().isoformat()
        call_command("rebuild_rollups", "--org", "alice-org", "--since", since, stdout=out, stderr=err)
        assert rollup_reads.summary(selection)["count"] == 200
        with pytest.raises(Exception, match="not a date"):
            call_command("rebuild_rollups", "--since", "yesterday")

    def test_a_new_org_is_covered_from_the_start(self):
        assert rollups.covered_from(self.org.id) == rollups.EPOCH


class BudgetTests(BaseTestCase):
    def test_raw_rows_that_take_too_long_are_cut_off_with_a_message(self):
        heavy = ("SELECT pg_sleep(2)" if connection.vendor == "postgresql" else
                 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000) "
                 "SELECT count(*) FROM n")
        with pytest.raises(metrics.TooSlow, match="narrow the time range"):
            with metrics.budget(0.2), connection.cursor() as cursor:
                cursor.execute(heavy)
        with connection.cursor() as cursor:  # the connection is usable afterwards
            cursor.execute("SELECT 1")

    @override_settings(ANALYTICS_RAW_BUDGET_SECONDS=30)
    def test_two_filters_fall_back_to_the_rows(self):
        write_batch(records(self.org, 50, seed=6))
        key, raw_key = self.make_key()
        response = self.client.get("/api/v1/metrics/summary?model=gpt-4o&user_id=user-1",
                                   HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        assert response.status_code == 200
        expected = Selection(self.org, timezone.now() - timedelta(hours=24), None,
                             {"model": "gpt-4o", "user_id": "user-1"}).qs.count()
        assert response.json()["count"] == expected

    def test_the_sessions_seen_last_are_found_walking_back_from_the_newest_buckets(self):
        from analytics import rollup_reads

        rng = random.Random(9)
        now = time.time()
        batch = []
        for i in range(80):  # 80 sessions, each a few requests within an hour, over 12 days
            start = now - rng.uniform(0, 12 * 86400)
            for _ in range(rng.randint(1, 4)):
                batch += records(self.org, 1, seed=rng.randint(0, 10**6), session_id=f"sess-{i:02d}",
                                 created_at=min(now - 1, start + rng.uniform(0, 3600)))
        write_batch(batch)
        for days, limit, contains in ((30, 7, ""), (30, 200, ""), (3, 5, ""), (30, 4, "sess-1")):
            selection = Selection(self.org, timezone.now() - timedelta(days=days), None)
            ours = rollup_reads.grouped(selection, "session", order_by="-last", limit=limit, exclude_empty=True,
                                        percentiles=(), contains=contains)
            logs = selection.qs.exclude(session_id="").filter(session_id__icontains=contains)
            last = {}
            for log in logs:
                last[log.session_id] = max(last.get(log.session_id, log.created_at), log.created_at)
            expected = sorted(last, key=lambda s: (last[s], s), reverse=True)[:limit]
            assert [row["key"] for row in ours] == expected, (days, limit, contains)
            for row in ours:
                requests = [log for log in logs if log.session_id == row["key"]]
                assert row["count"] == len(requests) and row["last"] == last[row["key"]]
                assert row["first"] == min(log.created_at for log in requests)
