"""Helicone's request query and annotation routes, sessions and users (raw HTTP, as a script sends
them), checked against our own API's answers and against the logs themselves."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from datetime import timedelta

from django.utils import timezone

from analytics.models import Feedback, RequestLog, Score
from tests.analytics.helpers import make_logs
from tests.base import BaseTestCase

from .helpers import create_log

# Every field of Helicone's HeliconeRequest (its OpenAPI schema), plus cache_hit.
HELICONE_REQUEST_FIELDS = {
    "response_id", "response_created_at", "response_body", "response_status", "response_model", "request_id",
    "request_created_at", "request_body", "request_path", "request_user_id", "request_properties", "request_model",
    "model_override", "helicone_user", "provider", "delay_ms", "time_to_first_token", "total_tokens",
    "prompt_tokens", "prompt_cache_write_tokens", "prompt_cache_read_tokens", "completion_tokens",
    "prompt_audio_tokens", "completion_audio_tokens", "cost", "prompt_id", "prompt_version", "feedback_created_at",
    "feedback_id", "feedback_rating", "signed_body_url", "llmSchema", "country_code", "asset_ids", "asset_urls",
    "scores", "costUSD", "properties", "assets", "target_url", "model", "cache_reference_id", "cache_enabled",
    "updated_at", "request_referrer", "ai_gateway_body_mapping", "storage_location", "cache_hit",
}
PROVIDERS = {"openai": "OPENAI", "anthropic": "ANTHROPIC"}


class HeliconeQueryTestCase(BaseTestCase):
    def setUp(self):
        self.logs = make_logs(self.org, n=80, seed=19)
        make_logs(self.other_org, n=10, seed=3, user_id="u1", session_id="s1")
        _, self.reader = self.make_key(scopes=["read"])
        _, self.writer = self.make_key(scopes=["write"])

    def call(self, method: str, path: str, body=None, key: str | None = None):
        auth = {"HTTP_AUTHORIZATION": f"Bearer {key or self.reader}"}
        if method == "get":
            return self.client.get(path, **auth)
        return getattr(self.client, method)(path, body, content_type="application/json", **auth)

    def query(self, **body) -> list[dict]:
        response = self.call("post", "/v1/request/query", {"limit": 1000, **body})
        self.assertEqual(response.status_code, 200, response.content)
        self.assertIsNone(response.json()["error"])
        return response.json()["data"]

    def ours(self, params: str) -> list[dict]:
        response = self.call("get", f"/api/v1/requests?limit=1000&{params}")
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()["items"]

    def ids(self, rows: list[dict], key: str = "request_id") -> set[str]:
        return {row[key] for row in rows}


class RequestQueryTests(HeliconeQueryTestCase):
    def test_all_lists_the_orgs_logs_newest_first_in_helicones_fields_matching_our_api(self):
        rows = self.query(filter="all", sort={"created_at": "desc"})
        ours = {item["id"]: item for item in self.ours("")}
        self.assertEqual(self.ids(rows), set(ours))
        self.assertEqual(len(rows), 80)
        created = [row["request_created_at"] for row in rows]
        self.assertEqual(created, sorted(created, reverse=True))
        for row in rows:
            self.assertEqual(set(row), HELICONE_REQUEST_FIELDS)
            item = ours[row["request_id"]]
            self.assertEqual(row["provider"], PROVIDERS[item["provider"]])
            pairs = [("model", "model"), ("response_status", "status"), ("prompt_tokens", "prompt_tokens"),
                     ("completion_tokens", "completion_tokens"), ("total_tokens", "total_tokens"),
                     ("cost", "cost_usd"), ("costUSD", "cost_usd"), ("delay_ms", "latency_ms"),
                     ("time_to_first_token", "ttft_ms"), ("cache_hit", "cache_hit")]
            for theirs, mine in pairs:
                self.assertEqual(row[theirs], item[mine], theirs)
            self.assertEqual(row["request_user_id"], item["user_id"] or None)
            session = {"Helicone-Session-Id": item["session_id"]} if item["session_id"] else {}
            self.assertEqual(row["request_properties"], {**item["properties"], **session})

    def test_filters_select_what_our_api_selects(self):
        since = (timezone.now() - timedelta(minutes=20)).isoformat()
        cases = [
            ({"request_response_rmt": {"model": {"equals": "gpt-4o"}}}, "model=gpt-4o"),
            ({"request_response_rmt": {"provider": {"equals": "ANTHROPIC"}}}, "provider=anthropic"),
            ({"request_response_rmt": {"user_id": {"equals": "u1"}}}, "user_id=u1"),
            ({"request_response_rmt": {"status": {"equals": 500}}}, "status=500"),
            ({"request_response_rmt": {"cached": {"equals": True}}}, "cache_hit=true"),
            ({"request_response_rmt": {"request_created_at": {"gte": since}}},
             "created_after=" + since.replace("+", "%2B")),
            ({"request_response_rmt": {"properties": {"Feature": {"equals": "chat"}}}}, "property.Feature=chat"),
            ({"properties": {"Feature": {"equals": "search"}}}, "property.Feature=search"),
            ({"request_response_rmt": {"properties": {"Helicone-Session-Id": {"equals": "s2"}}}}, "session_id=s2"),
            ({"left": {"request_response_rmt": {"model": {"equals": "gpt-4o"}}}, "operator": "and",
              "right": {"request_response_rmt": {"user_id": {"equals": "u2"}}}}, "model=gpt-4o&user_id=u2"),
        ]
        for tree, params in cases:
            with self.subTest(params=params):
                expected = {item["id"] for item in self.ours(params)}
                self.assertTrue(expected, params)
                self.assertEqual(self.ids(self.query(filter=tree)), expected)

    def expect(self, tree, keep) -> None:
        expected = {str(log.id) for log in self.logs if keep(log)}
        self.assertTrue(expected)
        self.assertEqual(self.ids(self.query(filter=tree)), expected, tree)

    def test_operators_and_branches(self):
        def total(log):
            return (log.prompt_tokens or 0) + (log.completion_tokens or 0)

        rmt = "request_response_rmt"
        self.expect({rmt: {"latency": {"gte": 1000, "lt": 2000}}},
                    lambda log: 1000 <= log.latency_ms < 2000)
        self.expect({rmt: {"cost": {"gt": 0.005}}}, lambda log: log.cost_usd is not None and log.cost_usd > 0.005)
        self.expect({rmt: {"total_tokens": {"lte": 1000}}}, lambda log: total(log) <= 1000)
        self.expect({rmt: {"model": {"not-equals": "gpt-4o"}}}, lambda log: log.model != "gpt-4o")
        self.expect({rmt: {"model": {"like": "gpt-4o%"}}}, lambda log: log.model.startswith("gpt-4o"))
        self.expect({rmt: {"model": {"ilike": "GPT-4O"}}}, lambda log: log.model == "gpt-4o")
        self.expect({rmt: {"model": {"contains": "MINI"}}}, lambda log: "mini" in log.model)
        self.expect({rmt: {"model": {"not-contains": "claude"}}}, lambda log: "claude" not in log.model)
        self.expect({rmt: {"properties": {"Feature": {"not-equals": "chat"}}}},
                    lambda log: log.properties.get("Feature") != "chat")
        self.expect({rmt: {"property_key": {"equals": "Env"}}}, lambda log: "Env" in log.properties)
        self.expect({"left": {rmt: {"user_id": {"equals": "u1"}}}, "operator": "or",
                     "right": {rmt: {"status": {"gte": 400}}}},
                    lambda log: log.user_id == "u1" or log.status >= 400)
        self.expect({"left": "all", "operator": "or", "right": {rmt: {"user_id": {"equals": "u1"}}}}, lambda log: True)
        self.expect({"left": {"left": {rmt: {"user_id": {"equals": "u1"}}}, "operator": "or",
                              "right": {rmt: {"user_id": {"equals": "u2"}}}},
                     "operator": "and", "right": {"response": {"status": {"equals": 200}}}},
                    lambda log: log.user_id in ("u1", "u2") and log.status == 200)
        # LIKE's `_` is any one character; everything else is literal (a dot is not a wildcard).
        self.expect({rmt: {"model": {"like": "gpt_4_"}}}, lambda log: re.fullmatch(r"gpt.4.", log.model) is not None)
        self.assertEqual(self.query(filter={rmt: {"model": {"like": "gpt.4o"}}}), [])

    def test_sort_limit_offset_and_is_cached(self):
        rows = self.query(sort={"latency": "asc"})
        latencies = [row["delay_ms"] for row in rows]
        self.assertEqual(latencies, sorted(latencies))
        first, second = self.query(sort={"latency": "asc"}, limit=10), self.query(sort={"latency": "asc"}, limit=10,
                                                                                  offset=10)
        self.assertEqual([r["request_id"] for r in first + second], [r["request_id"] for r in rows[:20]])
        by_cost = [row["cost"] for row in self.query(sort={"cost": "desc"}) if row["cost"] is not None]
        self.assertEqual(by_cost, sorted(by_cost, reverse=True))
        cached = self.query(isCached=True)
        self.assertEqual(self.ids(cached), {str(log.id) for log in self.logs if log.cache_hit})
        same = self.call("post", "/v1/request/query-clickhouse", {"filter": "all", "limit": 1000, "isCached": True})
        self.assertEqual(self.ids(same.json()["data"]), self.ids(cached))
        # By ids: the org's own only, the same rows as the query's.
        foreign = str(RequestLog.objects.filter(org=self.other_org).first().id)
        wanted = [row["request_id"] for row in rows[:3]]
        by_id = self.call("post", "/v1/request/query-ids", {"requestIds": wanted + [foreign, str(uuid.uuid4())]})
        self.assertEqual(by_id.json()["data"], [row for row in self.query() if row["request_id"] in wanted])
        bad = self.call("post", "/v1/request/query-ids", {"requestIds": ["nope"]})
        self.assertEqual((bad.status_code, bad.json()["error"]), (400, "requestIds.0: not a request id (a UUID)"))

    def test_bad_queries_are_400_naming_what_is_wrong(self):
        rmt = "request_response_rmt"
        cases = [
            ({"filter": {rmt: {"country_code": {"equals": "US"}}}}, "request_response_rmt.country_code"),
            ({"filter": {rmt: {"model": {"gte": "a"}}}}, "'gte'"),
            ({"filter": {rmt: {"latency": {"gte": "fast"}}}}, "latency.gte: expected a number"),
            ({"filter": {rmt: {"request_created_at": {"gte": "yesterday"}}}}, "ISO 8601"),
            ({"filter": {"experiments": {"id": {"equals": "x"}}}}, "filter.experiments"),
            ({"filter": {"left": "all", "operator": "xor", "right": "all"}}, "filter.operator"),
            ({"filter": {rmt: {"properties": {"a__b": {"equals": "x"}}}}}, "property"),
            ({"filter": "everything"}, "filter"),
            ({"filter": "all", "limit": 5000}, "limit"),
            ({"filter": "all", "sort": {"country": "asc"}}, "sort.country"),
            ({"filter": "all", "limit": "ten"}, "limit"),
        ]
        for body, words in cases:
            with self.subTest(body=body):
                response = self.call("post", "/v1/request/query", body)
                self.assertEqual(response.status_code, 400, response.content)
                self.assertIsNone(response.json()["data"])
                self.assertIn(words, response.json()["error"])

    def test_keys_and_isolation(self):
        self.assertEqual(self.client.post("/v1/request/query", {"filter": "all"},
                                          content_type="application/json").status_code, 401)
        response = self.call("post", "/v1/request/query", {"filter": "all"}, key=self.writer)
        self.assertEqual(response.status_code, 403)
        self.assertEqual(response.json(), {"data": None, "error": "This API key lacks the 'read' scope"})
        _, outsider = self.make_key(org=self.other_org, scopes=["read"])
        rows = self.call("post", "/v1/request/query", {"filter": "all", "limit": 1000}, key=outsider).json()["data"]
        self.assertEqual(len(rows), 10)
        self.assertFalse(self.ids(rows) & {str(log.id) for log in self.logs})
        # A suspended organization's keys are refused.
        self.other_org.suspended_at, self.other_org.suspended_reason = timezone.now(), "unpaid invoice"
        self.other_org.save(update_fields=["suspended_at", "suspended_reason"])
        response = self.call("post", "/v1/request/query", {"filter": "all"}, key=outsider)
        self.assertEqual(response.status_code, 403)
        self.assertIn("suspended: unpaid invoice", response.json()["error"])
        self.other_org.suspended_at = None
        self.other_org.save(update_fields=["suspended_at"])
        # The org comes from the key: naming another org in a filter finds nothing more.
        response = self.call("post", "/v1/request/query", {"filter": {
            "request_response_rmt": {"organization_id": {"equals": str(self.org.id)}}}}, key=outsider)
        self.assertEqual(response.status_code, 400)


class OneRequestAndAnnotationTests(HeliconeQueryTestCase):
    def setUp(self):
        super().setUp()
        self.log = create_log(
            org=self.org, provider="openai", model="gpt-4o-mini", requested_model="gpt-4o-mini", status=200,
            request_body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
            response_body='{"choices":[{"message":{"content":"hello"}}]}', prompt_tokens=3, completion_tokens=4,
            latency_ms=321.5, user_id="ana", target_url="https://api.openai.com/v1/chat/completions",
            prompt_id="support", prompt_version=2)

    def test_get_one_request_with_and_without_its_bodies(self):
        path = f"/v1/request/{self.log.id}"
        row = self.call("get", path).json()["data"]
        self.assertEqual((row["request_id"], row["request_body"], row["response_body"]), (str(self.log.id), None, None))
        self.assertEqual((row["prompt_id"], row["prompt_version"], row["request_path"]),
                         ("support", "2", "https://api.openai.com/v1/chat/completions"))
        row = self.call("get", path + "?includeBody=true").json()["data"]
        self.assertEqual(row["request_body"]["messages"], [{"role": "user", "content": "hi"}])
        self.assertEqual(row["response_body"]["choices"][0]["message"]["content"], "hello")
        ours = self.call("get", f"/api/v1/requests/{self.log.id}").json()
        self.assertEqual((row["request_body"], row["response_body"]), (ours["request_body"], ours["response_body"]))
        _, outsider = self.make_key(org=self.other_org, scopes=["read"])
        for key, url in ((outsider, path), (None, f"/v1/request/{uuid.uuid4()}"), (None, "/v1/request/nope")):
            response = self.call("get", url, key=key)
            self.assertEqual(response.status_code, 404)
            self.assertEqual(response.json()["data"], None)
            self.assertIn("No request", response.json()["error"])

    def test_feedback_scores_and_properties_show_on_our_api(self):
        base = f"/v1/request/{self.log.id}"
        response = self.call("post", base + "/feedback", {"rating": True}, key=self.writer)
        self.assertEqual((response.status_code, response.json()), (200, {"data": None, "error": None}))
        response = self.call("post", base + "/score", {"scores": {"accuracy": 0.75, "helpful": True}},
                             key=self.writer)
        self.assertEqual((response.status_code, response.json()), (201, {"data": None, "error": None}))
        response = self.call("put", base + "/property", {"key": "Reviewed", "value": "yes"}, key=self.writer)
        self.assertEqual((response.status_code, response.json()), (200, {"data": None, "error": None}))

        ours = self.call("get", f"/api/v1/requests/{self.log.id}").json()
        self.assertEqual(ours["feedback"], {"rating": True})
        self.assertEqual(ours["scores"], {"accuracy": 0.75, "helpful": True})
        self.assertEqual(ours["properties"], {"Reviewed": "yes"})
        row = self.call("get", base).json()["data"]
        self.assertEqual((row["feedback_rating"], row["scores"]), (True, {"accuracy": 0.75, "helpful": 1}))
        self.assertEqual(row["feedback_id"], str(Feedback.objects.get(request=self.log).id))
        self.assertEqual(row["request_properties"], {"Reviewed": "yes"})
        # The last rating wins; the feedback filter sees it.
        self.call("post", base + "/feedback", {"rating": False}, key=self.writer)
        rows = self.query(filter={"feedback": {"rating": {"equals": False}}})
        self.assertEqual(self.ids(rows), {str(self.log.id)})
        rows = self.query(filter={"request_response_rmt": {"scores": {"accuracy": {"gte": "0.7"}}}})
        self.assertEqual(self.ids(rows), {str(self.log.id)})
        self.assertEqual(self.query(filter={"request_response_rmt": {"scores": {"accuracy": {"gt": 0.8}}}}), [])
        self.assertEqual(self.ids(self.query(filter="all", isScored=True)), {str(self.log.id)})

    def test_bad_annotations_are_refused_and_change_nothing(self):
        base = f"/v1/request/{self.log.id}"
        cases = [
            ("post", "/feedback", {"rating": "yes"}, 400, "rating"),
            ("post", "/score", {"scores": {"accuracy": "high"}}, 400, "scores"),
            ("post", "/score", {"scores": {}}, 400, "scores"),
            ("put", "/property", {"key": "a__b", "value": "x"}, 400, "key"),
            ("put", "/property", {"key": "Reviewed"}, 400, "value"),
        ]
        for method, suffix, body, status, words in cases:
            with self.subTest(suffix=suffix, body=body):
                response = self.call(method, base + suffix, body, key=self.writer)
                self.assertEqual(response.status_code, status, response.content)
                self.assertIn(words, response.json()["error"])
        _, outsider = self.make_key(org=self.other_org, scopes=["write"])
        for method, suffix, body in (("post", "/feedback", {"rating": True}),
                                     ("post", "/score", {"scores": {"a": 1}}),
                                     ("put", "/property", {"key": "Pwned", "value": "1"})):
            with self.subTest(suffix=suffix, who="outsider"):
                self.assertEqual(self.call(method, base + suffix, body, key=outsider).status_code, 404)
            with self.subTest(suffix=suffix, who="read key"):
                self.assertEqual(self.call(method, base + suffix, body).status_code, 403)
        self.assertFalse(Feedback.objects.exists() or Score.objects.exists())
        self.log.refresh_from_db()
        self.assertEqual(self.log.properties, {})


class SessionAndUserTests(HeliconeQueryTestCase):
    def window(self) -> dict:
        now = timezone.now()
        return {"startTimeUnixMs": (now - timedelta(hours=2)).timestamp() * 1000,
                "endTimeUnixMs": now.timestamp() * 1000}

    def sessions(self, **body) -> list[dict]:
        response = self.call("post", "/v1/session/query", {"search": "", "timeFilter": self.window(),
                                                            "timezoneDifference": 0, "filter": "all", **body})
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()["data"]

    def test_sessions_total_their_requests(self):
        groups = defaultdict(list)
        for log in self.logs:
            if log.session_id:
                groups[log.session_id].append(log)
        rows = self.sessions()
        self.assertEqual({row["session_id"] for row in rows}, set(groups))
        for row in rows:
            logs = groups[row["session_id"]]
            self.assertEqual(row["total_requests"], len(logs))
            self.assertEqual(row["prompt_tokens"], sum(log.prompt_tokens for log in logs))
            self.assertEqual(row["completion_tokens"], sum(log.completion_tokens for log in logs))
            self.assertEqual(row["total_tokens"], row["prompt_tokens"] + row["completion_tokens"])
            self.assertAlmostEqual(row["total_cost"], float(sum(log.cost_usd or 0 for log in logs)), places=9)
            self.assertAlmostEqual(row["avg_latency"], sum(log.latency_ms for log in logs) / len(logs), places=6)
            self.assertEqual(row["created_at"][:19], min(log.created_at for log in logs).isoformat()[:19])
            self.assertEqual(row["latest_request_created_at"][:19],
                             max(log.created_at for log in logs).isoformat()[:19])
        # Newest activity first; search, the request filter and the session totals narrow it.
        latest = [row["latest_request_created_at"] for row in rows]
        self.assertEqual(latest, sorted(latest, reverse=True))
        self.assertEqual([row["session_id"] for row in self.sessions(search="S2")], ["s2"])
        only_gpt4o = self.sessions(filter={"request_response_rmt": {"model": {"equals": "gpt-4o"}}})
        for row in only_gpt4o:
            self.assertEqual(row["total_requests"],
                             sum(1 for log in groups[row["session_id"]] if log.model == "gpt-4o"))
        busiest = max(groups, key=lambda name: len(groups[name]))
        rows = self.sessions(filter={"sessions_request_response_rmt": {
            "session_total_requests": {"gte": len(groups[busiest])}}})
        self.assertEqual([row["session_id"] for row in rows], [busiest])
        # Our own sessions page lists the same sessions.
        self.client.force_login(self.alice)
        page = self.client.get("/o/alice-org/sessions/").content.decode()
        for name in groups:
            self.assertIn(name, page)

    def test_session_query_needs_its_time_window(self):
        response = self.call("post", "/v1/session/query", {"search": "", "filter": "all", "timezoneDifference": 0})
        self.assertEqual(response.status_code, 400)
        self.assertIn("timeFilter", response.json()["error"])

    def test_user_metrics(self):
        groups = defaultdict(list)
        for log in self.logs:
            if log.user_id:
                groups[log.user_id].append(log)
        response = self.call("post", "/v1/user/metrics/query", {"filter": "all", "offset": 0, "limit": 100,
                                                                 "sort": {"total_requests": "desc"}})
        self.assertEqual(response.status_code, 200, response.content)
        data = response.json()["data"]
        self.assertEqual((data["hasUsers"], data["count"]), (True, len(groups)))
        self.assertEqual({row["user_id"] for row in data["users"]}, set(groups))
        counts = [row["total_requests"] for row in data["users"]]
        self.assertEqual(counts, sorted(counts, reverse=True))
        ours = {group["key"]: group for group in self.call(
            "get", "/api/v1/metrics/summary?group_by=user").json()["groups"]}
        for row in data["users"]:
            logs = groups[row["user_id"]]
            self.assertEqual(row["id"], row["user_id"])
            self.assertEqual(row["total_requests"], len(logs))
            self.assertEqual(row["total_requests"], ours[row["user_id"]]["count"])
            self.assertEqual(row["total_prompt_tokens"], ours[row["user_id"]]["prompt_tokens"])
            self.assertAlmostEqual(row["cost"], ours[row["user_id"]]["cost_usd"], places=9)
            days = {log.created_at.date() for log in logs}
            self.assertEqual(row["active_for"], len(days))
            self.assertAlmostEqual(row["average_requests_per_day_active"], len(logs) / len(days))
            tokens = sum(log.prompt_tokens + log.completion_tokens for log in logs)
            self.assertAlmostEqual(row["average_tokens_per_request"], tokens / len(logs))
        fewest = min(len(logs) for logs in groups.values())
        response = self.call("post", "/v1/user/metrics/query", {
            "filter": {"users_view": {"user_total_requests": {"gt": fewest}}}, "offset": 0, "limit": 100})
        self.assertEqual({row["user_id"] for row in response.json()["data"]["users"]},
                         {name for name, logs in groups.items() if len(logs) > fewest})
        response = self.call("post", "/v1/user/metrics/query", {
            "filter": {"user_metrics": {"total_requests": {"gt": fewest}}}, "offset": 0, "limit": 100})
        self.assertEqual({row["user_id"] for row in response.json()["data"]["users"]},
                         {name for name, logs in groups.items() if len(logs) > fewest})
        response = self.call("post", "/v1/user/metrics/query", {
            "filter": {"request_response_rmt": {"user_id": {"equals": "u1"}}}, "offset": 0, "limit": 1})
        self.assertEqual([row["user_id"] for row in response.json()["data"]["users"]], ["u1"])
        _, outsider = self.make_key(org=self.other_org, scopes=["read"])
        data = self.call("post", "/v1/user/metrics/query", {"filter": "all", "offset": 0, "limit": 100},
                         key=outsider).json()["data"]
        self.assertEqual([(row["user_id"], row["total_requests"]) for row in data["users"]], [("u1", 10)])
