"""Feedback, scores and properties on a logged request: stored, shown by GET, isolated, scoped."""

import uuid

from orgs.models import AuditEvent
from tests.base import BaseTestCase

from .helpers import create_log


class FeedbackScoresPropertyTests(BaseTestCase):
    def setUp(self):
        self.key, self.raw = self.make_key(scopes=["read", "write"])
        self.log = create_log(org=self.org, provider="openai", model="gpt-4o-mini", status=200,
                                             properties={"Feature": "chat"})
        self.foreign = create_log(org=self.other_org, provider="openai", model="m", status=200)

    def call(self, method, path, data=None, raw=None):
        return getattr(self.client, method)(path, data, content_type="application/json",
                                            HTTP_AUTHORIZATION=f"Bearer {raw or self.raw}")

    def detail(self, log=None):
        return self.call("get", f"/api/v1/requests/{(log or self.log).id}").json()

    def test_detail_starts_without_feedback_or_scores(self):
        data = self.detail()
        assert data["feedback"] is None and data["scores"] == {}

    def test_feedback_is_stored_and_the_last_rating_wins(self):
        response = self.call("post", f"/api/v1/requests/{self.log.id}/feedback", {"rating": True})
        assert response.status_code == 200, response.content
        assert self.detail()["feedback"] == {"rating": True}
        self.call("post", f"/api/v1/requests/{self.log.id}/feedback", {"rating": False})
        assert self.detail()["feedback"] == {"rating": False}
        assert self.call("post", f"/api/v1/requests/{self.log.id}/feedback", {"rating": "yes"}).status_code == 422

    def test_scores_numbers_and_booleans(self):
        response = self.call("post", f"/api/v1/requests/{self.log.id}/scores",
                             {"scores": {"accuracy": 0.82, "helpful": True, "words": 12}})
        assert response.status_code == 200, response.content
        assert self.detail()["scores"] == {"accuracy": 0.82, "helpful": True, "words": 12}
        self.call("post", f"/api/v1/requests/{self.log.id}/scores", {"scores": {"accuracy": 0.9}})
        assert self.detail()["scores"]["accuracy"] == 0.9
        assert self.call("post", f"/api/v1/requests/{self.log.id}/scores",
                         {"scores": {"bad": "text"}}).status_code == 422
        assert self.call("post", f"/api/v1/requests/{self.log.id}/scores", {"scores": {}}).status_code == 422

    def test_property_is_set_filterable_and_audited(self):
        response = self.call("put", f"/api/v1/requests/{self.log.id}/property", {"key": "Outcome", "value": "won"})
        assert response.status_code == 200, response.content
        assert self.detail()["properties"] == {"Feature": "chat", "Outcome": "won"}
        listed = self.call("get", "/api/v1/requests?property.Outcome=won").json()
        assert [item["id"] for item in listed["items"]] == [str(self.log.id)]
        event = AuditEvent.objects.get(action="request.property_set")
        assert event.org == self.org and event.actor_api_key == self.key and event.target_id == str(self.log.id)
        assert self.call("put", f"/api/v1/requests/{self.log.id}/property",
                         {"key": "a__b", "value": "x"}).status_code == 422

    def test_changes_need_the_write_scope(self):
        _, read_only = self.make_key(scopes=["read"])
        for method, suffix, body in [("post", "feedback", {"rating": True}), ("post", "scores", {"scores": {"a": 1}}),
                                     ("put", "property", {"key": "k", "value": "v"})]:
            response = self.call(method, f"/api/v1/requests/{self.log.id}/{suffix}", body, raw=read_only)
            assert response.status_code == 403, suffix
        assert self.detail()["feedback"] is None and self.detail()["scores"] == {}

    def test_another_orgs_request_is_404_and_unchanged(self):
        for method, suffix, body in [("post", "feedback", {"rating": True}), ("post", "scores", {"scores": {"a": 1}}),
                                     ("put", "property", {"key": "k", "value": "v"})]:
            assert self.call(method, f"/api/v1/requests/{self.foreign.id}/{suffix}", body).status_code == 404
            assert self.call(method, f"/api/v1/requests/{uuid.uuid4()}/{suffix}", body).status_code == 404
        self.foreign.refresh_from_db()
        assert self.foreign.properties == {} and not self.foreign.scores.exists()
        assert not hasattr(self.foreign, "feedback") or self.foreign.feedback is None
