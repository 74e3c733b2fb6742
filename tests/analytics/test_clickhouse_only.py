"""ClickHouse as the only log store (CLICKHOUSE_URL with CLICKHOUSE_ONLY=1): the writer writes no log
and no rollup into SQL, and the reads and changes of logs work from ClickHouse alone: Helicone's query
API with feedback and scores, property edits (audited), manual logs, OpenTelemetry matching, the
operators' admin list, the API's request list and erase."""

from __future__ import annotations

import time
import uuid

import orjson
from django.test import override_settings

from analytics import lifecycle
from analytics.clickhouse import client, rows
from analytics.models import Feedback, RequestLog, Rollup, Score
from analytics.writer import write_batch, write_unstored
from orgs.models import AuditEvent
from tests.analytics.test_manual_log import body as manual_body
from tests.analytics.test_rollups import records
from tests.base import ClickHouseTestCase

from .otlp_helpers import chat_attributes, export, new_span_id, new_trace, span


def stored(org) -> int:
    return client().query("SELECT count() FROM request_logs FINAL WHERE org_id = {o:UInt64}",
                          parameters={"o": org.id}).result_rows[0][0]


class ClickHouseOnlyTests(ClickHouseTestCase):
    clickhouse_empty_each_test = True

    def setUp(self):
        super().setUp()
        # Per test, not on the class: a class's settings are restored after its ClickHouse URL is.
        self.enterContext(override_settings(CLICKHOUSE_ONLY=True))
        _, self.reader = self.make_key(scopes=["read"])
        _, self.writer = self.make_key(scopes=["write"])
        self.proxy_key, self.proxy = self.make_key(scopes=["proxy"])

    def call(self, method: str, path: str, data=None, key: str | None = None):
        auth = {"HTTP_AUTHORIZATION": f"Bearer {key or self.reader}"}
        if method == "get":
            return self.client.get(path, **auth)
        return getattr(self.client, method)(path, data, content_type="application/json", **auth)

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
        response = self.client.post("/v1/traces", export(span(trace=trace, parent=new_span_id(), attrs=attrs))
                                    .SerializeToString(), content_type="application/x-protobuf",
                                    HTTP_AUTHORIZATION=f"Bearer {self.proxy}")
        assert response.status_code == 200
        assert stored(self.org) == 1 and rows.get(self.org.pk, log_id).session_id == trace.hex()

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
