"""The request panel's server side (issue #22 item 1): the fragment a click on a row loads, the
feedback and score forms it posts (members yes, viewers no, outsiders 404, audited), the replay
`curl` without secrets, and the session page with the selected request beside its trace."""

import json
import shlex
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from analytics.models import Feedback, RequestLog, Score
from analytics.writer import write_batch
from orgs.models import AuditEvent, Membership, Role, User
from tests.analytics.test_rollups import records
from tests.base import BaseTestCase, ClickHouseTestCase

from .helpers import create_log

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "It's a \"quoted\" question"}]})


class RequestPanelTests(BaseTestCase):
    def setUp(self):
        now = timezone.now()
        self.first = create_log(
            org=self.org, provider="openai", model="gpt-4o-mini", status=200, latency_ms=400,
            path="/v1/chat/completions", target_url="https://api.openai.com/v1/chat/completions", request_body=BODY,
            response_body='{"choices": [{"message": {"role": "assistant", "content": "An answer"}}]}',
            request_headers={"authorization": "[redacted]", "helicone-auth": "[redacted]",
                             "helicone-user-id": "ana", "helicone-property-feature": "trip's plan",
                             "x-custom-token": "tok-123", "content-type": "application/json"},
            session_id="trip-1", session_path="/plan", session_name="Trip planner", prompt_tokens=10,
            completion_tokens=3, cost_usd=Decimal("0.0001"), created_at=now - timedelta(seconds=30))
        self.second = create_log(
            org=self.org, provider="anthropic", model="claude-3-5-haiku", status=500, latency_ms=100,
            path="/v1/messages", target_url="https://api.anthropic.com/v1/messages", request_body="{}",
            request_headers={"x-api-key": "[redacted]", "anthropic-version": "2023-06-01"},
            session_id="trip-1", session_path="/plan/hotels", created_at=now - timedelta(seconds=20))
        self.base = f"/o/alice-org/requests/{self.first.id}/"

    def post(self, url, data, fetch=True):
        headers = {"HTTP_X_REQUESTED_WITH": "fetch"} if fetch else {}
        return self.client.post(url, data, **headers)

    def test_the_panel_is_a_fragment_of_the_request_page(self):
        self.client.force_login(self.bob)
        fragment = self.client.get(self.base, {"panel": "1"})
        html = fragment.content.decode()
        assert fragment.status_code == 200 and "<html" not in html and "It&#x27;s a" in html
        assert f'href="/o/alice-org/requests/{self.first.id}/"' in html  # "Open full page"
        assert f'href="/o/alice-org/sessions/trip-1/?request={self.first.id}"' in html
        assert 'data-copy="rp-curl"' in html and 'data-copy="rp-id"' in html and "👍" in html
        page = self.client.get(self.base).content.decode()
        assert page.startswith("<!doctype html>") and "An answer" in page and "request_panel.js" in page

    def test_the_curl_replays_through_this_gateway_without_secrets(self):
        self.client.force_login(self.alice)
        curl = self.client.get(self.base).context["replay_curl"]
        words = shlex.split(curl.replace("\\\n", " "))
        assert words[:4] == ["curl", "-X", "POST", "http://testserver/oai/v1/chat/completions"]
        headers = [words[i + 1] for i, word in enumerate(words) if word == "-H"]
        assert "Helicone-Auth: Bearer $HELICONE_API_KEY" in headers
        assert "Authorization: Bearer $OPENAI_API_KEY" in headers
        assert "helicone-user-id: ana" in headers and "helicone-property-feature: trip's plan" in headers
        assert "redacted" not in curl and "tok-123" not in curl and "sk-" not in curl
        assert json.loads(words[words.index("--data-raw") + 1]) == json.loads(BODY)
        anthropic = self.client.get(f"/o/alice-org/requests/{self.second.id}/").context["replay_curl"]
        assert "http://testserver/anthropic/v1/messages" in anthropic
        assert '-H "x-api-key: $ANTHROPIC_API_KEY"' in anthropic and "anthropic-version: 2023-06-01" in anthropic
        custom = create_log(org=self.org, provider="ollama", model="llama3", status=200, path="/api/chat",
                            target_url="https://llm.internal:8443/base/api/chat?stream=false", request_body="{}")
        words = shlex.split(self.client.get(f"/o/alice-org/requests/{custom.id}/").context["replay_curl"]
                            .replace("\\\n", " "))
        assert words[3] == "http://testserver/gateway/api/chat?stream=false"
        assert "Helicone-Target-Url: https://llm.internal:8443/base" in words

    def test_a_member_rates_and_scores_and_it_is_audited(self):
        self.client.force_login(self.bob)
        answer = self.post(self.base + "feedback/", {"rating": "up"})
        assert answer.status_code == 200 and answer.json()["rating"] is True
        assert Feedback.objects.get(request=self.first).rating is True
        assert self.post(self.base + "feedback/", {"rating": "down"}).json()["rating"] is False
        assert Feedback.objects.get(request=self.first).rating is False
        scored = self.post(self.base + "score/", {"name": "accuracy", "value": "0.5"})
        assert scored.status_code == 200 and scored.json()["scores"] == {"accuracy": 0.5}
        assert self.post(self.base + "score/", {"name": "helpful", "value": "true"}).json()["scores"]["helpful"] is True
        page = self.client.get(self.base).content.decode()
        assert "👎 negative" in page and "accuracy" in page and "0.5" in page
        events = list(AuditEvent.objects.filter(org=self.org).values_list("action", "actor_user", "target_id"))
        assert ("request.feedback_set", self.bob.id, str(self.first.id)) in events
        assert ("request.score_set", self.bob.id, str(self.first.id)) in events

    def test_without_javascript_the_form_post_returns_to_the_page(self):
        self.client.force_login(self.bob)
        answer = self.post(self.base + "feedback/", {"rating": "up", "next": "/o/alice-org/sessions/trip-1/"},
                           fetch=False)
        assert answer.status_code == 302 and answer["Location"] == "/o/alice-org/sessions/trip-1/"
        elsewhere = self.post(self.base + "feedback/", {"rating": "up", "next": "https://evil.example/"}, fetch=False)
        assert elsewhere["Location"] == self.base

    def test_bad_input_is_a_400_naming_the_field(self):
        self.client.force_login(self.bob)
        for url, data, field in [("feedback/", {"rating": "maybe"}, "rating"),
                                 ("score/", {"name": "accuracy", "value": "high"}, "value"),
                                 ("score/", {"name": "accuracy", "value": "nan"}, "value"),
                                 ("score/", {"name": "", "value": "1"}, "name"),
                                 ("score/", {"name": "x" * 101, "value": "1"}, "scores")]:
            answer = self.post(self.base + url, data)
            assert answer.status_code == 400 and answer.json()["error"].startswith(field), (data, answer.content)
        assert not Score.objects.exists() and not Feedback.objects.exists()

    def test_a_viewer_sees_no_forms_and_may_not_post(self):
        viewer = User.objects.create_user("vera@example.org", "pw-vera-123456")
        Membership.objects.create(org=self.org, user=viewer, role=Role.VIEWER)
        self.client.force_login(viewer)
        fragment = self.client.get(self.base, {"panel": "1"}).content.decode()
        assert "An answer" in fragment and "feedback/" not in fragment
        assert self.post(self.base + "feedback/", {"rating": "up"}).status_code == 403
        assert self.post(self.base + "score/", {"name": "a", "value": "1"}).status_code == 403
        assert not Feedback.objects.exists()

    def test_an_outsider_gets_404_everywhere(self):
        self.client.force_login(self.charlie)
        assert self.client.get(self.base, {"panel": "1"}).status_code == 404
        assert self.post(self.base + "feedback/", {"rating": "up"}).status_code == 404
        assert self.post(self.base + "score/", {"name": "a", "value": "1"}).status_code == 404
        own = f"/o/charlie-org/requests/{self.first.id}/"
        assert self.post(own + "feedback/", {"rating": "up"}).status_code == 404
        assert not Feedback.objects.exists()

    def test_the_session_page_shows_the_selected_request_beside_the_trace(self):
        self.client.force_login(self.alice)
        page = self.client.get("/o/alice-org/sessions/trip-1/")
        html = page.content.decode()
        assert page.context["log"].id == self.first.id  # the first request until one is picked
        assert html.count('<a class="trace-row') == 2 and 'id="request-panel"' in html and "An answer" in html
        picked = self.client.get("/o/alice-org/sessions/trip-1/", {"request": str(self.second.id)})
        assert picked.context["log"].id == self.second.id
        assert f'class="trace-row panel-selected" href="?request={self.second.id}"' in picked.content.decode()
        assert self.client.get("/o/alice-org/sessions/trip-1/", {"request": "nope"}).status_code == 400
        other = create_log(org=self.org, provider="openai", model="gpt-4o", status=200, session_id="other")
        assert self.client.get("/o/alice-org/sessions/trip-1/", {"request": str(other.id)}).status_code == 404


class RequestPanelOnClickHouseTests(ClickHouseTestCase):
    """With ClickHouse, the panel and the session page read the logs from it; feedback still lands."""

    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        write_batch(records(cls.org, 30, seed=61, hours=2, users=3))

    def test_the_panel_and_the_session_page_read_clickhouse(self):
        log = RequestLog.objects.filter(org=self.org).exclude(session_id="").order_by("created_at").first()
        self.client.force_login(self.bob)
        base = f"/o/alice-org/requests/{log.id}/"
        fragment = self.client.get(base, {"panel": "1"})
        assert fragment.status_code == 200 and fragment.context["log"].request_body == log.request_body
        assert self.client.post(base + "feedback/", {"rating": "up"},
                                HTTP_X_REQUESTED_WITH="fetch").json()["rating"] is True
        assert self.client.get(base, {"panel": "1"}).context["feedback"].rating is True
        session = self.client.get(f"/o/alice-org/sessions/{log.session_id}/", {"request": str(log.id)})
        assert session.status_code == 200 and session.context["log"].id == log.id
