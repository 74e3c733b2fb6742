"""Helicone's query API (/v1/request/query, its ids and one-request routes, sessions and users) read
from ClickHouse gives the same answers as from SQL for the same logs, feedback and scores included."""

from __future__ import annotations

from datetime import timedelta

from django.test import override_settings
from django.utils import timezone

from analytics import actions
from analytics.clickhouse import store
from analytics.models import RequestLog
from tests.analytics.helpers import create_log, make_logs
from tests.base import ClickHouseTestCase

RMT = "request_response_rmt"


def rounded(value):
    """Floats to 9 significant digits: an average summed in another order differs in its last bits."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


class HeliconeQueryFromClickHouseTests(ClickHouseTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        logs = make_logs(cls.org, n=120, seed=31)
        make_logs(cls.other_org, n=10, seed=3, user_id="u1", session_id="s1")
        cls.bodied = create_log(
            org=cls.org, provider="openai", model="gpt-4o-mini", requested_model="gpt-4o-mini", status=200,
            request_body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi there"}]}',
            response_body='{"choices":[{"message":{"content":"hello"}}]}', prompt_tokens=3, completion_tokens=4,
            latency_ms=321.5, user_id="ana", session_id="s9", session_name="Onboarding",
            target_url="https://api.openai.com/v1/chat/completions", prompt_id="support", prompt_version=2,
            properties={"Feature": "chat", "Tier": "gold"})
        for number, log in enumerate(logs[:6]):
            actions.set_feedback(cls.org, log, number % 2 == 0)
        actions.set_scores(cls.org, logs[1], {"accuracy": 0.9, "helpful": True})
        actions.set_scores(cls.org, logs[2], {"accuracy": 0.4})
        actions.set_scores(cls.org, cls.bodied, {"accuracy": 0.75})
        store.insert(list(RequestLog.objects.all()))
        _, cls.reader = cls.make_key(cls, scopes=["read"])

    def post(self, path: str, body: dict) -> dict:
        response = self.client.post(path, body, content_type="application/json",
                                    HTTP_AUTHORIZATION=f"Bearer {self.reader}")
        return {"status": response.status_code, **response.json()}

    def get(self, path: str) -> dict:
        response = self.client.get(path, HTTP_AUTHORIZATION=f"Bearer {self.reader}")
        return {"status": response.status_code, **response.json()}

    def same(self, answer) -> dict:
        """What ClickHouse answers, checked equal to what SQL answers."""
        ours = answer()
        with override_settings(CLICKHOUSE_URL=""):
            expected = answer()
        self.assertEqual(rounded(ours), rounded(expected))
        return ours

    def test_request_queries_answer_as_sql_does(self):
        since = (timezone.now() - timedelta(minutes=20)).isoformat()
        filters = [
            "all",
            {RMT: {"model": {"equals": "gpt-4o"}}},
            {RMT: {"provider": {"equals": "ANTHROPIC"}}},
            {RMT: {"status": {"gte": 400}}},
            {RMT: {"latency": {"gte": 1000, "lt": 2000}}},
            {RMT: {"cost": {"gt": 0.005}}},
            {RMT: {"cost": {"not-equals": 0.005}}},
            {RMT: {"total_tokens": {"lte": 1000}}},
            {RMT: {"time_to_first_token": {"lt": 100}}},
            {RMT: {"model": {"not-equals": "gpt-4o"}}},
            {RMT: {"model": {"like": "gpt_4o%"}}},
            {RMT: {"model": {"ilike": "GPT-4O"}}},
            {RMT: {"model": {"contains": "MINI"}}},
            {RMT: {"model": {"not-contains": "claude"}}},
            {RMT: {"cached": {"equals": True}}},
            {RMT: {"request_created_at": {"gte": since}}},
            {RMT: {"properties": {"Feature": {"equals": "chat"}}}},
            {RMT: {"properties": {"Tier": {"not-equals": "silver"}}}},
            {RMT: {"properties": {"Tier": {"contains": "OL"}}}},
            {RMT: {"properties": {"Helicone-Session-Id": {"equals": "s2"}}}},
            {RMT: {"property_key": {"equals": "Tier"}}},
            {"properties": {"Feature": {"equals": "search"}}},
            {RMT: {"request_id": {"equals": str(self.bodied.id)}}},
            {RMT: {"request_body": {"contains": "HI THERE"}}},
            {RMT: {"response_body": {"not-contains": "hello"}}},
            {RMT: {"prompt_version": {"equals": "v2"}}},
            {RMT: {"prompt_version": {"not-equals": "2"}}},
            {RMT: {"scores": {"accuracy": {"gte": 0.5}}}},
            {RMT: {"helicone-score-feedback": {"equals": True}}},
            {"feedback": {"rating": {"equals": False}}},
            {"request": {"model": {"equals": "gpt-4o-mini"}}},
            {"sessions_request_response_rmt": {"session_session_name": {"equals": "Onboarding"}}},
            {"left": {RMT: {"user_id": {"equals": "u1"}}}, "operator": "or", "right": {RMT: {"status": {"gte": 400}}}},
            {"left": {"left": {RMT: {"user_id": {"equals": "u1"}}}, "operator": "or",
                      "right": {RMT: {"user_id": {"equals": "u2"}}}},
             "operator": "and", "right": {"response": {"status": {"equals": 200}}}},
        ]
        for tree in filters:
            with self.subTest(filter=tree):
                answer = self.same(lambda: self.post("/v1/request/query", {"filter": tree, "limit": 1000}))
                self.assertEqual(answer["status"], 200, answer)
                self.assertTrue(answer["data"])
        rows = self.post("/v1/request/query", {"filter": {RMT: {"scores": {"accuracy": {"gte": 0.5}}}}})["data"]
        self.assertEqual(len(rows), 2)
        self.assertIn({"accuracy": 0.75}, [row["scores"] for row in rows])

    def test_sorts_pages_and_flags_answer_as_sql_does(self):
        bodies = [
            {"sort": {"latency": "asc"}},
            {"sort": {"cost": "desc"}, "limit": 10, "offset": 5},
            {"sort": {"total_tokens": "desc"}},
            {"sort": {"user_id": "asc", "created_at": "desc"}},
            {"sort": {"properties": {"Tier": "desc"}}, "limit": 5},
            {"isCached": True},
            {"isScored": True},
            {"limit": 0},
        ]
        for body in bodies:
            with self.subTest(body=body):
                answer = self.same(lambda: self.post("/v1/request/query-clickhouse", {"filter": "all", **body}))
                self.assertEqual(answer["status"], 200, answer)
        answer = self.same(lambda: self.post("/v1/request/query", {"filter": "all", "sort": {"nope": "asc"}}))
        self.assertEqual(answer["status"], 400)

    def test_one_request_and_requests_by_ids_answer_as_sql_does(self):
        answer = self.same(lambda: self.get(f"/v1/request/{self.bodied.id}?includeBody=true"))
        self.assertEqual(answer["data"]["request_body"]["messages"][0]["content"], "hi there")
        self.assertEqual(answer["data"]["scores"], {"accuracy": 0.75})
        foreign = str(RequestLog.objects.filter(org=self.other_org).first().id)
        wanted = [str(log.id) for log in RequestLog.objects.filter(org=self.org)[:4]]
        answer = self.same(lambda: self.post("/v1/request/query-ids", {"requestIds": [*wanted, foreign]}))
        self.assertEqual(len(answer["data"]), 4)
        answer = self.same(lambda: self.get(f"/v1/request/{foreign}"))
        self.assertEqual(answer["status"], 404)

    def test_sessions_and_users_answer_as_sql_does(self):
        now = timezone.now()
        window = {"startTimeUnixMs": (now - timedelta(hours=2)).timestamp() * 1000,
                  "endTimeUnixMs": now.timestamp() * 1000}
        sessions = [
            {},
            {"search": "S2"},
            {"nameEquals": "Onboarding"},
            {"filter": {RMT: {"model": {"equals": "gpt-4o"}}}},
            {"filter": {"sessions_request_response_rmt": {"session_total_requests": {"gte": 20}}}},
            {"filter": {"sessions_request_response_rmt": {"session_total_cost": {"gt": 0.01}}}},
            {"limit": 1, "offset": 1},
        ]
        for body in sessions:
            with self.subTest(sessions=body):
                answer = self.same(lambda: self.post("/v1/session/query", {"timeFilter": window, **body}))
                self.assertEqual(answer["status"], 200, answer)
                self.assertTrue(answer["data"])
        seconds = {"startTimeUnixSeconds": (now - timedelta(hours=2)).timestamp(),
                   "endTimeUnixSeconds": now.timestamp()}
        users = [
            {},
            {"sort": {"total_requests": "desc"}},
            {"sort": {"cost": "asc"}, "limit": 2, "offset": 1},
            {"timeFilter": seconds, "timeZoneDifferenceMinutes": 300},
            {"filter": {RMT: {"status": {"equals": 200}}}},
            {"filter": {"users_view": {"user_total_requests": {"gte": 25}}}},
            {"filter": {"user_metrics": {"active_for": {"equals": 1}}}},
        ]
        for body in users:
            with self.subTest(users=body):
                answer = self.same(lambda: self.post("/v1/user/metrics/query", {"filter": "all", **body}))
                self.assertEqual(answer["status"], 200, answer)
                self.assertTrue(answer["data"]["users"])
