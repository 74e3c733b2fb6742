"""The dashboard, explorer, detail, sessions and users pages: content, filters and isolation."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from analytics.models import Feedback, RequestLog, Score
from tests.base import BaseTestCase

from .helpers import create_log, make_logs


class PagesTests(BaseTestCase):
    def setUp(self):
        self.logs = make_logs(self.org, n=40)
        now = timezone.now()
        self.chat = create_log(
            org=self.org, provider="openai", model="gpt-4o-mini", status=200, latency_ms=900, ttft_ms=120,
            prompt_tokens=12, completion_tokens=5, cost_usd=Decimal("0.000123"), user_id="ana",
            session_id="trip-1", session_path="/plan", session_name="Trip planner",
            properties={"Feature": "itinerary"}, request_name="plan", created_at=now - timedelta(seconds=30),
            request_body='{"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."},'
                         ' {"role": "user", "content": "Plan a day in Lisbon"}]}',
            response_body='{"choices": [{"message": {"role": "assistant", "content": "Tram 28, then pastel de nata."}}]}',
        )
        self.step = create_log(
            org=self.org, provider="openai", model="gpt-4o", status=500, latency_ms=200, user_id="ana",
            session_id="trip-1", session_path="/plan/hotels", created_at=now - timedelta(seconds=20),
            error="upstream exploded",
        )
        Feedback.objects.create(org=self.org, request=self.chat, rating=True)
        Score.objects.create(org=self.org, request=self.chat, name="accuracy", value=0.75)
        self.foreign = create_log(org=self.other_org, provider="openai", model="secret-model",
                                                 status=200, user_id="charlie-user", session_id="charlie-session")
        self.old = create_log(org=self.org, provider="openai", model="ancient", status=200,
                                             created_at=now - timedelta(days=2))

    def login(self, user):
        self.client.force_login(user)

    def pages(self, org=None):
        slug = (org or self.org).slug
        return [f"/o/{slug}/", f"/o/{slug}/requests/", f"/o/{slug}/requests/{self.chat.id}/",
                f"/o/{slug}/sessions/", f"/o/{slug}/sessions/trip-1/", f"/o/{slug}/users/"]

    def test_members_see_every_page(self):
        for user in (self.alice, self.bob):
            self.login(user)
            for url in self.pages():
                response = self.client.get(url)
                assert response.status_code == 200, (user, url)
                assert b"secret-model" not in response.content and b"charlie" not in response.content

    def test_an_outsider_gets_404_and_no_data(self):
        self.login(self.charlie)
        for url in self.pages():
            response = self.client.get(url)
            assert response.status_code == 404, url
            assert b"Lisbon" not in response.content and b"gpt-4o" not in response.content
        # Charlie's own org never shows Alice's logs, even by id.
        assert self.client.get(f"/o/charlie-org/requests/{self.chat.id}/").status_code == 404
        assert self.client.get("/o/charlie-org/sessions/trip-1/").status_code == 404
        assert [u["user_id"] for u in self.client.get("/o/charlie-org/users/").context["users"]] == ["charlie-user"]

    def test_anonymous_is_sent_to_login(self):
        for url in self.pages():
            response = self.client.get(url)
            assert response.status_code == 302 and response["Location"].startswith("/login/"), url

    def test_dashboard_totals_and_charts(self):
        self.login(self.alice)
        response = self.client.get("/o/alice-org/")
        assert response.context["totals"]["count"] == 42  # the 2-day-old log is outside the 24h default
        assert response.context["totals"]["active_users"] == len({l.user_id for l in self.logs if l.user_id} | {"ana"})
        html = response.content.decode()
        assert html.count('<svg class="chart"') == 4
        assert "Cost by model" in html and "Top users" in html
        assert response.context["property_key"] == "Env" and ">prod<" in html  # the first key, with its values
        by_feature = self.client.get("/o/alice-org/", {"property": "Feature"})
        assert [item["label"] for item in by_feature.context["top_values"]][:3] != [] and b"itinerary" in by_feature.content
        assert 'data-live-url="/ws/orgs/alice-org/live/"' in html
        week = self.client.get("/o/alice-org/?range=7d")
        assert week.context["totals"]["count"] == 43 and week.context["interval"] == "day"

    def test_explorer_filters_sorts_and_pages(self):
        self.login(self.alice)
        rows = lambda **params: self.client.get("/o/alice-org/requests/", params).context["rows"]  # noqa: E731
        assert [r.id for r in rows(user_id="ana")] == [self.step.id, self.chat.id]
        assert [r.id for r in rows(status="error", user_id="ana")] == [self.step.id]
        assert [r.id for r in rows(prop_key="Feature", prop_value="itinerary")] == [self.chat.id]
        assert [r.id for r in rows(q="Lisbon")] == [self.chat.id]
        assert [r.id for r in rows(request_name="plan")] == [self.chat.id]
        assert all(r.model == "gpt-4o" for r in rows(model="gpt-4o"))
        assert all(r.cache_hit for r in rows(cache_hit="true"))
        slowest = rows(sort="slowest")
        latencies = [r.latency_ms for r in slowest if r.latency_ms is not None]
        assert latencies == sorted(latencies, reverse=True)
        first = self.client.get("/o/alice-org/requests/")
        assert len(first.context["rows"]) == 42 and not first.context["has_next"]
        make_logs(self.org, n=30, seed=3)
        page1 = self.client.get("/o/alice-org/requests/")
        page2 = self.client.get("/o/alice-org/requests/", {"page": 2})
        assert page1.context["has_next"] and len(page1.context["rows"]) == 50
        assert len(page2.context["rows"]) == 22 and not page2.context["has_next"]
        assert not {r.id for r in page1.context["rows"]} & {r.id for r in page2.context["rows"]}
        assert b"Plan a day" not in page1.content  # bodies are not loaded for the list
        bad_status = self.client.get("/o/alice-org/requests/", {"status": "abc"})  # named, never silently dropped
        assert bad_status.status_code == 400 and b"Status: a number, or &#x27;error&#x27;." in bad_status.content

    def test_largest_first_sorts_page_through_every_log_with_the_unmeasured_last(self):
        self.login(self.alice)
        make_logs(self.org, n=70, seed=11)
        unmeasured = list(RequestLog.objects.filter(org=self.org).order_by("id").values_list("id", flat=True)[:45])
        RequestLog.objects.filter(id__in=unmeasured).update(latency_ms=None)
        in_range = set(RequestLog.objects.filter(org=self.org, created_at__gte=timezone.now() - timedelta(days=1))
                       .values_list("id", flat=True))
        for sort, column in (("slowest", "latency_ms"), ("costliest", "cost_usd")):
            seen, page = [], 1
            while True:
                response = self.client.get("/o/alice-org/requests/", {"sort": sort, "page": page})
                seen += response.context["rows"]
                if not response.context["has_next"]:
                    break
                page += 1
            assert page >= 3 and len(seen) == len(in_range) and {r.id for r in seen} == in_range
            values = [getattr(r, column) for r in seen]
            valued = [v for v in values if v is not None]
            assert values[:len(valued)] == sorted(valued, reverse=True)  # the measured first, largest first
            assert all(v is None for v in values[len(valued):])

    def test_detail_shows_conversation_feedback_and_scores(self):
        self.login(self.bob)
        html = self.client.get(f"/o/alice-org/requests/{self.chat.id}/").content.decode()
        for text in ["Plan a day in Lisbon", "Be brief.", "Tram 28, then pastel de nata.", "positive", "accuracy",
                     "0.75", "Trip planner", "itinerary", "120 ms to first token", "$0.000123"]:
            assert text in html, text
        error_html = self.client.get(f"/o/alice-org/requests/{self.step.id}/").content.decode()
        assert "upstream exploded" in error_html

    def test_sessions_tree_and_timeline(self):
        self.login(self.alice)
        listing = self.client.get("/o/alice-org/sessions/")
        trip = [s for s in listing.context["sessions"] if s["session_id"] == "trip-1"][0]
        assert trip["requests"] == 2 and trip["errors"] == 1 and trip["name"] == "Trip planner"
        detail = self.client.get("/o/alice-org/sessions/trip-1/")
        tree = detail.context["tree"]
        assert [(node["path"], node["depth"], [l.id for l in node["logs"]]) for node in tree] == [
            ("/plan", 0, [self.chat.id]), ("/plan/hotels", 1, [self.step.id])]
        assert len(detail.context["timeline"]) == 2
        assert self.client.get("/o/alice-org/sessions/nope/").status_code == 404

    def test_users_page_totals(self):
        self.login(self.alice)
        users = {u["user_id"]: u for u in self.client.get("/o/alice-org/users/").context["users"]}
        ana = users["ana"]
        assert ana["requests"] == 2 and ana["errors"] == 1 and ana["tokens"] == 17
        assert ana["cost"] == Decimal("0.000123")
        expected = [l for l in self.logs if l.user_id == "u1"]
        assert users["u1"]["requests"] == len(expected)
        assert users["u1"]["tokens"] == sum((l.prompt_tokens or 0) + (l.completion_tokens or 0) for l in expected)
