"""ClickHouse as the only log store, what CLICKHOUSE_URL alone means (CLICKHOUSE_ONLY=0 keeps a SQL
copy): the writer writes no log and no rollup into SQL, and the reads and changes of logs work from
ClickHouse alone: a user's walk through the pages and APIs, Helicone's query API with feedback and
scores, property edits (audited), manual logs, OpenTelemetry matching, the operators' admin list,
the API's request list, erase and purge."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
import zipfile
from contextlib import contextmanager
from datetime import timedelta

import orjson
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics import alerts, lifecycle
from analytics.clickhouse import client, rows
from analytics.models import AlertRule, Feedback, RequestLog, Rollup, Score
from analytics.writer import build_log, write_batch, write_unstored
from orgs.models import AuditEvent
from prompts.models import Prompt
from tests.analytics.test_manual_log import body as manual_body
from tests.analytics.test_rollups import records
from tests.base import ClickHouseTestCase

from .otlp_helpers import chat_attributes, export, new_span_id, new_trace, span


def stored(org) -> int:
    return client().query("SELECT count() FROM request_logs FINAL WHERE org_id = {o:UInt64}",
                          parameters={"o": org.id}).result_rows[0][0]


SQL_LOG_TABLES = (RequestLog._meta.db_table, Rollup._meta.db_table)  # the second also names the coverage table


@contextmanager
def no_sql_log_reads():
    """Fails when a SQL query inside touches the request logs or their rollups: in only mode, every
    read and change of a log goes to ClickHouse."""
    with CaptureQueriesContext(connection) as captured:
        yield
    touched = [query["sql"] for query in captured.captured_queries
               if any(table in query["sql"] for table in SQL_LOG_TABLES)]
    assert not touched, touched[:3]


class ClickHouseOnlyTests(ClickHouseTestCase):
    clickhouse_only = True  # what CLICKHOUSE_URL alone means (heliconeproj/settings.py)
    clickhouse_empty_each_test = True

    def setUp(self):
        super().setUp()
        _, self.reader = self.make_key(scopes=["read"])
        _, self.writer = self.make_key(scopes=["write"])
        self.proxy_key, self.proxy = self.make_key(scopes=["proxy"])

    def call(self, method: str, path: str, data=None, key: str | None = None):
        auth = {"HTTP_AUTHORIZATION": f"Bearer {key or self.reader}"}
        if method == "get":
            return self.client.get(path, **auth)
        return getattr(self.client, method)(path, data, content_type="application/json", **auth)

    def log(self, **meta) -> str:
        request_id = str(uuid.uuid4())
        response = self.call("post", "/api/v1/log", manual_body(**{"Helicone-Request-Id": request_id, **meta}),
                             key=self.proxy)
        assert response.status_code == 201, response.content
        return request_id

    def test_a_walk_through_the_pages_and_apis_reads_and_changes_clickhouse_alone(self):
        """A user logs a few calls and walks every page and API that reads or changes them: each
        answers from ClickHouse, with the logged figures, and SQL holds no log."""
        trip = {"Helicone-User-Id": "ana", "Helicone-Session-Id": "trip-1", "Helicone-Session-Name": "Trip to Rome",
                "Helicone-Property-Feature": "chat"}
        Prompt.objects.create(org=self.org, slug="greeter", name="Greeter")
        with no_sql_log_reads():
            ana = [self.log(**trip), self.log(**trip)]
            bo = self.log(**{"Helicone-User-Id": "bo", "Helicone-Property-Feature": "search",
                             "Helicone-Prompt-Id": "greeter"})
            everyone = {*ana, bo}
            one = self.call("get", f"/api/v1/requests/{bo}").json()
            cost = one["cost_usd"]  # gpt-4o-mini, 1,000 prompt and 500 completion tokens
            assert cost > 0 and one["latency_ms"] == 1250 and one["user_id"] == "bo"
            assert one["response_body"]["choices"][0]["message"]["content"] == "Hi!"

            self.client.force_login(self.alice)
            dashboard = self.client.get("/o/alice-org/")
            assert dashboard.status_code == 200
            assert dashboard.context["totals"]["count"] == 3
            assert dashboard.context["totals"]["cost_usd"] == pytest.approx(3 * cost)
            assert {str(log.id) for log in dashboard.context["recent"]} == everyone

            explorer = self.client.get("/o/alice-org/requests/?range=24h&f=user_id:eq:ana&f=latency_ms:gt:1000")
            assert explorer.status_code == 200
            assert {str(log.id) for log in explorer.context["rows"]} == set(ana)
            assert explorer.context["pickers"]["property_values"] == {"Feature": ["chat", "search"]}
            assert self.client.get("/o/alice-org/requests/?range=24h&f=latency_ms:lt:1000").context["rows"] == []

            page = self.client.get(f"/o/alice-org/requests/{bo}/")
            assert page.status_code == 200 and page.context["log"].user_id == "bo"
            assert float(page.context["log"].cost_usd) == pytest.approx(cost)
            panel = self.client.get(f"/o/alice-org/requests/{ana[0]}/", {"panel": "1"})
            assert panel.status_code == 200 and panel.context["log"].session_name == "Trip to Rome"

            sessions = self.client.get("/o/alice-org/sessions/").context["sessions"]
            assert [(s["session_id"], s["requests"], s["name"], s["users"]) for s in sessions] == [
                ("trip-1", 2, "Trip to Rome", 1)]
            assert float(sessions[0]["cost"]) == pytest.approx(2 * cost)
            found = self.client.get("/o/alice-org/sessions/", {"session": "ROME"}).context["sessions"]
            assert [s["session_id"] for s in found] == ["trip-1"]
            session = self.client.get("/o/alice-org/sessions/trip-1/")
            assert session.status_code == 200 and all(log_id in session.content.decode() for log_id in ana)

            users = self.client.get("/o/alice-org/users/").context["users"]
            assert {(u["user_id"], u["requests"]) for u in users} == {("ana", 2), ("bo", 1)}
            assert self.client.get("/o/alice-org/users/", {"user": "AN"}).context["users"][0]["user_id"] == "ana"
            user = self.client.get("/o/alice-org/user/", {"id": "ana"})
            assert user.status_code == 200 and user.context["totals"]["count"] == 2
            assert [(m["label"], m["value"]) for m in user.context["models"]] == [("gpt-4o-mini-2024-07-18", 2)]

            prompts = self.client.get("/o/alice-org/prompts/").context["prompts"]
            assert [(p.slug, p.request_count) for p in prompts] == [("greeter", 1)]
            assert self.client.get("/o/alice-org/prompts/greeter/").status_code == 200

            listed = self.call("get", "/api/v1/requests").json()
            assert listed["count"] == 3 and {item["id"] for item in listed["items"]} == everyone
            assert {item["id"] for item in self.call("get", "/api/v1/requests?user_id=ana").json()["items"]} == set(ana)
            summary = self.call("get", "/api/v1/metrics/summary").json()
            assert (summary["count"], summary["prompt_tokens"], summary["completion_tokens"]) == (3, 3000, 1500)
            assert summary["cost_usd"] == pytest.approx(3 * cost)
            buckets = self.call("get", "/api/v1/metrics/timeseries?interval=hour").json()["buckets"]
            assert sum(bucket["count"] for bucket in buckets) == 3
            by_user = self.call("get", "/api/v1/metrics/summary?group_by=user").json()["groups"]
            assert {(g["key"], g["count"]) for g in by_user} == {("ana", 2), ("bo", 1)}

            queried = self.call("post", "/v1/request/query",
                                {"filter": {"properties": {"Feature": {"equals": "chat"}}}}).json()["data"]
            assert {row["request_id"] for row in queried} == set(ana)
            helicone_sessions = self.call("post", "/v1/session/query", {"search": "", "timeFilter": {
                "startTimeUnixMs": 0, "endTimeUnixMs": int(time.time() * 1000) + 60_000}}).json()["data"]
            assert [(s["session_id"], s["total_requests"]) for s in helicone_sessions] == [("trip-1", 2)]
            helicone_users = self.call("post", "/v1/user/metrics/query", {"filter": "all"}).json()["data"]["users"]
            assert {(u["user_id"], u["total_requests"]) for u in helicone_users} == {("ana", 2), ("bo", 1)}

            # Changes: feedback and a score (API and page), a property, then the lists see them.
            assert self.call("post", f"/api/v1/requests/{ana[0]}/feedback", {"rating": True},
                             key=self.writer).status_code == 200
            assert self.call("post", f"/api/v1/requests/{ana[0]}/scores", {"scores": {"accuracy": 0.9}},
                             key=self.writer).status_code == 200
            rated = self.client.post(f"/o/alice-org/requests/{ana[1]}/feedback/", {"rating": "down"},
                                     HTTP_X_REQUESTED_WITH="fetch")
            assert rated.json()["rating"] is False
            assert self.call("put", f"/api/v1/requests/{bo}/property", {"key": "Reviewed", "value": "yes"},
                             key=self.writer).status_code == 200
            reviewed = self.client.get("/o/alice-org/requests/?range=24h&f=property.Reviewed:eq:yes")
            assert [str(log.id) for log in reviewed.context["rows"]] == [bo]
            detail = self.call("get", f"/api/v1/requests/{ana[0]}").json()
            assert (detail["feedback"], detail["scores"]) == ({"rating": True}, {"accuracy": 0.9})

            export = self.client.post("/o/alice-org/settings/export/")
            with zipfile.ZipFile(io.BytesIO(b"".join(export.streaming_content))) as archive:
                exported = [orjson.loads(line) for line in archive.read("logs.jsonl").splitlines()]
                assert len(archive.read("feedback.jsonl").splitlines()) == 2
            assert {row["id"] for row in exported} == everyone
            assert {row["id"]: row["properties"] for row in exported}[bo] == {"Feature": "search", "Reviewed": "yes"}

            rule = AlertRule.objects.create(org=self.org, name="Spend", metric="cost_usd", threshold=2.5 * cost,
                                            window_seconds=3600)
            with self.captureOnCommitCallbacks(execute=True):
                fired, _ = alerts.evaluate_rule(rule)
            assert len(fired) == 1 and fired[0].request_count == 3
            assert fired[0].value == pytest.approx(3 * cost)

            erase_page = self.client.get("/o/alice-org/users/erase/", {"user_id": "ana"})
            assert erase_page.context["requests"] == 2
            write_batch([{"id": str(uuid.uuid4()), "org_id": self.org.id, "created_at": time.time() - 10 * 86400,
                          "provider": "openai", "model": "gpt-4o", "status": 200, "user_id": "bo"}])
            self.org.retention_days = 5
            self.org.save(update_fields=["retention_days"])
            out = io.StringIO()
            call_command("purge_logs", "--org", "alice-org", "--dry-run", stdout=out)
            assert "would delete 1 log(s)" in out.getvalue()

        # Erase and purge also look for a SQL copy left from before (test_erase_and_purge_leave_no_sql_copy).
        assert self.client.post("/o/alice-org/users/erase/", {"user_id": "ana"}).status_code == 302
        call_command("purge_logs", "--org", "alice-org", stdout=out)
        assert "alice-org: deleted 1 log(s)" in out.getvalue()

        with no_sql_log_reads():
            assert stored(self.org) == 1
            assert [item["id"] for item in self.call("get", "/api/v1/requests").json()["items"]] == [bo]
            assert self.client.get("/o/alice-org/").context["totals"]["count"] == 1
            assert not Feedback.objects.filter(org=self.org).exists() and not Score.objects.exists()

            self.login_verified_staff()
            admin_list = self.client.get("/admin/analytics/requestlog/")
            assert admin_list.status_code == 200 and bo in admin_list.content.decode()
            assert self.client.get(f"/admin/analytics/requestlog/{bo}/change/").status_code == 200
            figures = self.client.get("/admin/analytics/requestlog/figures/", {"org": "alice-org"})
            assert figures.context["figures"].totals["requests"] == 1
            assert self.client.get("/admin/analytics/modelprice/unpriced/").status_code == 200
            org_page = self.client.get(f"/admin/orgs/organization/{self.org.pk}/change/")
            assert "1 / unlimited" in org_page.content.decode()
            assert not org_page.context["has_delete_permission"]  # an org with logs is suspended, not deleted
        assert not RequestLog.objects.exists() and not Rollup.objects.exists()

    def test_the_writer_writes_no_sql_log_and_never_a_log_twice(self):
        batch = records(self.org, 200, seed=51, hours=5, users=5)
        write_batch(batch)
        write_batch(batch)  # a retry
        write_unstored(batch[:50] + records(self.org, 20, seed=52, hours=5))  # a replay, 20 new
        assert stored(self.org) == 220
        assert not RequestLog.objects.exists() and not Rollup.objects.exists()
        # A record of an org deleted while it waited is dropped; the rest of its batch is written.
        gone = records(self.org, 1, seed=53)[0] | {"org_id": 987654}
        write_batch([gone, *records(self.other_org, 5, seed=54)])
        assert stored(self.other_org) == 5
        summary = self.call("get", "/api/v1/metrics/summary").json()
        assert summary["count"] == 220

    def test_feedback_scores_and_properties_on_a_log_only_clickhouse_holds(self):
        request_id = str(uuid.uuid4())
        response = self.client.post("/api/v1/log", manual_body(**{"Helicone-Request-Id": request_id,
                                                                   "Helicone-User-Id": "ana"}),
                                    content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {self.proxy}")
        assert response.status_code == 201, response.content
        assert not RequestLog.objects.exists() and stored(self.org) == 1
        base = f"/v1/request/{request_id}"
        assert self.call("post", base + "/feedback", {"rating": False}, key=self.writer).status_code == 200
        assert self.call("post", base + "/score", {"scores": {"accuracy": 0.8}}, key=self.writer).status_code == 201
        assert self.call("put", base + "/property", {"key": "Reviewed", "value": "yes"},
                         key=self.writer).status_code == 200
        assert AuditEvent.objects.filter(action="request.property_set", org=self.org).exists()
        row = self.call("get", base + "?includeBody=true").json()["data"]
        assert (row["feedback_rating"], row["scores"]) == (False, {"accuracy": 0.8})
        assert row["request_properties"] == {"Reviewed": "yes"}
        assert row["response_body"]["choices"][0]["message"]["content"] == "Hi!"
        for tree in ({"feedback": {"rating": {"equals": False}}},
                     {"request_response_rmt": {"scores": {"accuracy": {"gte": 0.5}}}},
                     {"properties": {"Reviewed": {"equals": "yes"}}}):
            found = self.call("post", "/v1/request/query", {"filter": tree}).json()["data"]
            assert [r["request_id"] for r in found] == [request_id], tree
        # The same id again is refused for another org, and adds nothing for this one.
        _, other_proxy = self.make_key(org=self.other_org, scopes=["proxy"])
        again = self.client.post("/api/v1/log", manual_body(**{"Helicone-Request-Id": request_id}),
                                 content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {other_proxy}")
        assert again.status_code == 400 and stored(self.other_org) == 0
        # Another org's key reaches none of it.
        _, outsider = self.make_key(org=self.other_org, scopes=["read", "write"])
        assert self.call("get", base, key=outsider).status_code == 404
        assert self.call("post", base + "/feedback", {"rating": True}, key=outsider).status_code == 404
        assert Feedback.objects.get().rating is False and Score.objects.count() == 1

    def test_a_span_joins_a_proxied_log_only_clickhouse_holds(self):
        attrs = chat_attributes()
        log_id = str(uuid.uuid4())
        write_batch([{"id": log_id, "org_id": self.org.id, "created_at": time.time() - 5, "provider": "openai",
                      "status": 200, "model": "gpt-4o-mini-2024-07-18", "source": "proxy",
                      "response_body": orjson.dumps({"id": attrs["gen_ai.response.id"]}).decode()}])
        trace = new_trace()
        with no_sql_log_reads():
            response = self.client.post("/v1/traces", export(span(trace=trace, parent=new_span_id(), attrs=attrs))
                                        .SerializeToString(), content_type="application/x-protobuf",
                                        HTTP_AUTHORIZATION=f"Bearer {self.proxy}")
        assert response.status_code == 200
        assert stored(self.org) == 1 and rows.get(self.org.pk, log_id).session_id == trace.hex()

    def test_request_webhooks_hear_of_the_logs_written_from_records(self):
        from analytics.models import Webhook, WebhookDelivery

        hook = Webhook.objects.create(org=self.org, kind="requests", url="http://127.0.0.1:9/hook", secret="k",
                                      property_filters={"Plan": "pro"}, include_bodies=True)
        batch = records(self.org, 40, seed=57) + records(self.other_org, 40, seed=58)
        write_batch(batch)
        wanted = {record["id"] for record in batch[:40] if record["properties"]["Plan"] == "pro"}
        sent = [orjson.loads(body)["request"] for body in WebhookDelivery.objects.values_list("body", flat=True)]
        assert wanted and {request["id"] for request in sent} == wanted
        assert all(delivery.webhook == hook for delivery in WebhookDelivery.objects.all())
        priced = {record["id"]: build_log(record).cost_usd for record in batch}  # the writer prices them
        assert all(request["cost_usd"] == (None if priced[request["id"]] is None else float(priced[request["id"]]))
                   for request in sent)
        assert any(request["cost_usd"] for request in sent)
        write_batch(batch)  # written again: stored already, and told of once
        assert WebhookDelivery.objects.count() == len(wanted)

    def test_the_admin_list_and_erase_work_without_sql_logs(self):
        write_batch(records(self.org, 60, seed=55, hours=5, users=3))
        some = client().query(  # any one of user-1's logs
            "SELECT id FROM request_logs WHERE user_id = 'user-1' LIMIT 1").result_rows[0][0]
        Feedback.objects.create(org=self.org, request_id=some, rating=True)
        self.login_verified_staff()
        page = self.client.get("/admin/analytics/requestlog/?q=user-1")
        assert page.status_code == 200 and str(some) in page.content.decode()
        assert self.client.get(f"/admin/analytics/requestlog/{some}/change/").status_code == 200

        before = stored(self.org)
        counts = lifecycle.erase_user(self.org, "user-1", via="test", batch_size=7)  # what the erase page calls
        assert counts["requests"] > 0 and counts["feedback"] == 1
        assert AuditEvent.objects.filter(org=self.org, action="end_user.erase").exists()
        assert stored(self.org) == before - counts["requests"]
        listed = self.call("get", "/api/v1/requests?user_id=user-1").json()
        assert listed["items"] == []
        summary = self.call("get", "/api/v1/metrics/summary").json()
        assert summary["count"] == before - counts["requests"]

    def test_erase_and_purge_leave_no_sql_copy(self):
        """An installation that ran the dual write (CLICKHOUSE_ONLY=0) keeps its SQL copy when it moves to
        ClickHouse only: an erase or a purge deletes the user's or the old logs there too."""
        now = time.time()
        old = records(self.org, 6, seed=58, hours=1, users=2)
        for record in old:
            record["created_at"] = now - 9 * 86400 - record["created_at"] % 3600
        with override_settings(CLICKHOUSE_ONLY=False):
            write_batch(records(self.org, 30, seed=59, hours=2, users=2) + old)
        Feedback.objects.create(org=self.org, request_id=old[0]["id"], rating=True)
        assert RequestLog.objects.filter(org=self.org).count() == stored(self.org) == 36
        ana = RequestLog.objects.filter(org=self.org, user_id="user-1").count()

        counts = lifecycle.erase_user(self.org, "user-1", via="test", batch_size=7)
        assert counts["requests"] == counts["sql_copy_requests"] == ana
        assert not RequestLog.objects.filter(user_id="user-1").exists()
        assert stored(self.org) == RequestLog.objects.filter(org=self.org).count() == 36 - ana
        self.org.retention_days = 5
        self.org.save(update_fields=["retention_days"])
        older = RequestLog.objects.filter(org=self.org, created_at__lt=timezone.now() - timedelta(days=5)).count()
        assert older and lifecycle.purge(lifecycle.purge_plan(self.org), batch_size=4) == older
        assert not RequestLog.objects.filter(org=self.org, created_at__lt=timezone.now() - timedelta(days=5)).exists()
        assert stored(self.org) == RequestLog.objects.filter(org=self.org).count() == 36 - ana - older
        assert not Feedback.objects.exists()
        assert self.call("get", "/api/v1/metrics/summary").json()["count"] == 36 - ana - older

    def test_generated_demo_logs_go_to_clickhouse(self):
        with no_sql_log_reads():
            call_command("generate_logs", "--org", "alice-org", "--count", "120", "--days", "0.5", "--seed", "3",
                         "--batch", "50", stdout=io.StringIO(), stderr=io.StringIO())
        assert stored(self.org) == 120 and not RequestLog.objects.exists() and not Rollup.objects.exists()
        assert self.call("get", "/api/v1/metrics/summary").json()["count"] == 120

    def test_retention_purges_the_logs_only_clickhouse_holds(self):
        now = time.time()
        write_batch(records(self.org, 30, seed=56, hours=2, users=3)
                    + [{**record, "created_at": now - 3 * 86400 - record["created_at"] % 3600}
                       for record in records(self.org, 20, seed=57, hours=1, users=3)])
        assert stored(self.org) == 50 and not RequestLog.objects.filter(org=self.org).exists()
        self.org.retention_days = 2
        self.org.save()
        assert lifecycle.purge(lifecycle.purge_plan(self.org), batch_size=6) == 20
        assert stored(self.org) == 30
        oldest = client().query("SELECT min(created_at) FROM request_logs FINAL WHERE org_id = {o:UInt64}",
                                parameters={"o": self.org.id}).result_rows[0][0]
        assert oldest.timestamp() > now - 2 * 86400
        assert AuditEvent.objects.filter(org=self.org, action="logs.purge").exists()


def settings_with(**env: str) -> subprocess.CompletedProcess:
    """heliconeproj.settings imported in a process of its own with these ClickHouse variables."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("CLICKHOUSE_")}
    environ.update(DEBUG="1", **env)
    return subprocess.run([sys.executable, "-c", "import heliconeproj.settings as s; print(s.CLICKHOUSE_ONLY)"],
                          env=environ, capture_output=True, text=True, timeout=60)


def test_clickhouse_url_alone_makes_it_the_only_log_store_and_clickhouse_only_0_keeps_the_sql_copy():
    url = "http://default:@127.0.0.1:8123/helicone"
    assert settings_with(CLICKHOUSE_URL=url).stdout.split() == ["True"]
    assert settings_with(CLICKHOUSE_URL=url, CLICKHOUSE_ONLY="0").stdout.split() == ["False"]
    assert settings_with().stdout.split() == ["False"]  # no ClickHouse: SQL is the log store
    refused = settings_with(CLICKHOUSE_ONLY="1")
    assert refused.returncode != 0
    assert "ImproperlyConfigured: CLICKHOUSE_ONLY=1 needs CLICKHOUSE_URL" in refused.stderr
