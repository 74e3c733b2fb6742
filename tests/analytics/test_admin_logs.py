"""Operators see request logs read-only, without a COUNT over the table, and edit model prices."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import ModelPrice
from orgs.models import AuditEvent
from tests.base import BaseTestCase

from .helpers import create_log


class AdminLogTests(BaseTestCase):
    def setUp(self):
        self.staff = self.login_verified_staff()
        self.log = create_log(org=self.org, provider="openai", model="gpt-4o", status=200,
                                             request_body='{"messages": [{"role": "user", "content": "hello"}]}')

    def test_list_runs_no_count_and_shows_no_bodies(self):
        with CaptureQueriesContext(connection) as queries:
            response = self.client.get("/admin/analytics/requestlog/")
        assert response.status_code == 200
        sql = " ".join(q["sql"] for q in queries.captured_queries if "analytics_requestlog" in q["sql"])
        assert "COUNT(" not in sql.upper()
        assert "request_body" not in sql
        assert str(self.log.id) in response.content.decode()

    def test_detail_is_read_only_and_pretty(self):
        response = self.client.get(f"/admin/analytics/requestlog/{self.log.id}/change/")
        assert response.status_code == 200
        assert "&quot;content&quot;: &quot;hello&quot;" in response.content.decode()
        assert self.client.post(f"/admin/analytics/requestlog/{self.log.id}/change/", {}).status_code == 403

    def test_model_price_change_is_audited(self):
        response = self.client.post("/admin/analytics/modelprice/add/", {
            "provider": "", "model": "my-model", "input_per_mtok": "1", "output_per_mtok": "2",
        })
        assert response.status_code == 302
        assert ModelPrice.objects.filter(model="my-model").exists()
        assert AuditEvent.objects.filter(action="admin.add", target_type="analytics.modelprice").exists()
