"""OpenTelemetry ingest with ClickHouse: a span is matched to its proxied log by response id among the
logs ClickHouse holds, never among another org's."""

from __future__ import annotations

import time
import uuid

import orjson

from analytics.clickhouse import rows
from analytics.models import RequestLog
from analytics.writer import write_batch
from tests.base import ClickHouseTestCase

from .otlp_helpers import chat_attributes, export, new_span_id, new_trace, span


class SpanMatchingTests(ClickHouseTestCase):
    clickhouse_empty_each_test = True

    def setUp(self):
        super().setUp()
        self.key, self.raw = self.make_key(scopes=["proxy"])

    def proxied(self, org, attrs) -> str:
        log_id = str(uuid.uuid4())
        write_batch([{"id": log_id, "org_id": org.id, "created_at": time.time() - 5, "provider": "openai",
                      "status": 200, "model": "gpt-4o-mini-2024-07-18", "source": "proxy",
                      "response_body": orjson.dumps({"id": attrs["gen_ai.response.id"]}).decode()}])
        return log_id

    def send(self, *spans) -> None:
        response = self.client.post("/v1/traces", export(*spans).SerializeToString(),
                                    content_type="application/x-protobuf", HTTP_AUTHORIZATION=f"Bearer {self.raw}")
        assert response.status_code == 200, response.content

    def test_a_span_joins_its_proxied_log_found_in_clickhouse(self):
        attrs = chat_attributes()
        log_id = self.proxied(self.org, attrs)
        trace = new_trace()
        self.send(span(trace=trace, parent=new_span_id(), attrs=attrs))
        # Matched: no log of its own, and the proxied log joins the trace's session, in both stores.
        assert not RequestLog.objects.filter(org=self.org, source="otlp").exists()
        assert rows.get(self.org.pk, log_id).session_id == trace.hex()

    def test_another_orgs_log_with_the_same_response_id_is_never_matched(self):
        attrs = chat_attributes()
        other_id = self.proxied(self.other_org, attrs)
        self.send(span(trace=new_trace(), attrs=attrs))
        assert RequestLog.objects.filter(org=self.org, source="otlp").count() == 1
        assert rows.get(self.other_org.pk, other_id).session_id == ""
