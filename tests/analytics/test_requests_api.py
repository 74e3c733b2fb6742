"""GET /api/v1/requests and /api/v1/requests/{id}: filters, paging, scopes, isolation."""

import uuid
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from orgs.models import ApiKey
from tests.base import BaseTestCase

from .helpers import create_log


class RequestsApiTests(BaseTestCase):
    def setUp(self):
        self.key, self.raw = self.make_key(scopes=["read"])
        now = timezone.now()
        self.logs = []
        for i in range(5):
            self.logs.append(create_log(
                org=self.org, provider="openai" if i % 2 == 0 else "anthropic", model=f"model-{i % 2}",
                status=200 if i != 3 else 500, user_id=f"user-{i % 2}", session_id="s1" if i < 2 else "",
                properties={"Feature": "chat" if i < 3 else "search"}, request_name="greet" if i == 0 else "",
                created_at=now - timedelta(minutes=10 - i), prompt_tokens=10, completion_tokens=i,
                cost_usd=Decimal("0.001") if i else None, request_body='{"messages": []}', response_body="plain text",
            ))
        self.foreign = create_log(org=self.other_org, provider="openai", model="model-0", status=200)

    def get(self, path, raw=None, **params):
        return self.client.get(path, params, HTTP_AUTHORIZATION=f"Bearer {raw or self.raw}")

    def ids(self, response):
        return [item["id"] for item in response.json()["items"]]

    def test_lists_newest_first_with_count_and_fields(self):
        response = self.get("/api/v1/requests")
        assert response.status_code == 200
        data = response.json()
        assert data["count"] == 5
        assert self.ids(response) == [str(log.id) for log in reversed(self.logs)]
        item = data["items"][-1]
        for field in ["id", "created_at", "provider", "model", "status", "error", "latency_ms", "ttft_ms",
                      "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "user_id", "session_id",
                      "session_path", "session_name", "properties", "request_name", "cache_hit", "retries",
                      "fallback_index", "prompt_id", "prompt_version", "streamed"]:
            assert field in item, field
        assert item["total_tokens"] == 10 and item["cost_usd"] is None
        assert "request_body" not in item

    def test_filters(self):
        assert len(self.ids(self.get("/api/v1/requests", user_id="user-1"))) == 2
        assert len(self.ids(self.get("/api/v1/requests", session_id="s1"))) == 2
        assert len(self.ids(self.get("/api/v1/requests", model="model-0"))) == 3
        assert len(self.ids(self.get("/api/v1/requests", provider="anthropic"))) == 2
        assert self.ids(self.get("/api/v1/requests", status=500)) == [str(self.logs[3].id)]
        assert self.ids(self.get("/api/v1/requests", request_name="greet")) == [str(self.logs[0].id)]
        assert len(self.ids(self.get("/api/v1/requests", **{"property.Feature": "search"}))) == 2
        assert self.get("/api/v1/requests", cache_hit="true").json()["count"] == 0
        after = (self.logs[3].created_at - timedelta(seconds=1)).isoformat()
        assert len(self.ids(self.get("/api/v1/requests", created_after=after))) == 2
        assert len(self.ids(self.get("/api/v1/requests", created_before=after))) == 3
        # The count (from the rollups for one filter, the rows for more) is the number of logs listed.
        for params in ({}, {"user_id": "user-1"}, {"model": "model-0"}, {"status": 500}, {"property.Feature": "chat"},
                       {"model": "model-0", "user_id": "user-0"}, {"created_after": after}, {"cache_hit": "false"},
                       {"model": "model-1", "created_before": after}):
            page = self.get("/api/v1/requests", **params).json()
            assert page["count"] == len(page["items"]), params

    def test_paging(self):
        response = self.get("/api/v1/requests", limit=2, offset=1)
        assert response.json()["count"] == 5
        assert self.ids(response) == [str(self.logs[3].id), str(self.logs[2].id)]
        assert self.get("/api/v1/requests", limit=0).status_code == 422

    def test_detail_has_bodies(self):
        data = self.get(f"/api/v1/requests/{self.logs[1].id}").json()
        assert data["request_body"] == {"messages": []}
        assert data["response_body"] == "plain text"
        assert data["cost_usd"] == 0.001

    def test_other_orgs_log_is_404(self):
        assert self.get(f"/api/v1/requests/{self.foreign.id}").status_code == 404
        assert self.get(f"/api/v1/requests/{uuid.uuid4()}").status_code == 404
        assert str(self.foreign.id) not in self.ids(self.get("/api/v1/requests"))

    def test_auth_and_scopes(self):
        assert self.client.get("/api/v1/requests").status_code == 401
        assert self.get("/api/v1/requests", raw="sk-helicone-nope").status_code == 401
        _, proxy_only = ApiKey.generate(self.org, "proxy", ["proxy"])
        response = self.get("/api/v1/requests", raw=proxy_only)
        assert response.status_code == 403 and "read" in response.json()["detail"]
        key, raw = self.make_key(scopes=["read"])
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        assert self.get("/api/v1/requests", raw=raw).status_code == 401

    def test_openapi_docs(self):
        assert self.client.get("/api/v1/docs").status_code == 200
        schema = self.client.get("/api/v1/openapi.json").json()
        assert "/api/v1/requests" in schema["paths"]
