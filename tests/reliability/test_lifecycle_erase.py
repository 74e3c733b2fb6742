"""Erasing one end user (GDPR): `manage.py erase_user`, `DELETE /api/v1/users/{user_id}` and the users page."""

import json
from io import StringIO
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from analytics.models import AlertEvent, AlertRule, Feedback, RequestLog, Score, Webhook, WebhookDelivery
from analytics.webhooks import request_payload
from gateway import ratelimit
from formats.headers import RatePolicy
from orgs.models import AuditEvent
from tests.analytics.helpers import make_logs
from tests.base import BaseTestCase, redis_url

USER = "ana@example.com"


class EraseUserTests(BaseTestCase):
    def setUp(self):
        self.anas = make_logs(self.org, n=6, user_id=USER)
        self.others = make_logs(self.org, n=4, seed=8, user_id="bruno")
        # The same user id in another org is another person's data: never touched.
        self.foreign = make_logs(self.other_org, n=3, seed=9, user_id=USER)
        for log in self.anas[:2] + self.others[:1] + self.foreign[:1]:
            Feedback.objects.create(org=log.org, request=log, rating=False)
            Score.objects.create(org=log.org, request=log, name="helpful", value=1, is_boolean=True)
        hook = Webhook.objects.create(org=self.org, kind=Webhook.Kind.REQUESTS, url="https://example.org/h",
                                      secret="s")
        for log in (self.anas[0], self.others[0]):
            WebhookDelivery.objects.create(org=self.org, webhook=hook, url=hook.url, event_type="request.logged",
                                           body=json.dumps(request_payload(log, False), separators=(",", ":")))
        rule = AlertRule.objects.create(org=self.org, name="per user", metric="request_count", threshold=1,
                                        group_by="user")
        AlertEvent.objects.create(org=self.org, rule=rule, group_key=USER, value=5, threshold=1)
        AlertEvent.objects.create(org=self.org, rule=rule, group_key="bruno", value=5, threshold=1)

    def assert_only_ana_in_alice_org_is_gone(self):
        assert not RequestLog.objects.filter(org=self.org, user_id=USER).exists()
        assert RequestLog.objects.filter(org=self.org, user_id="bruno").count() == 4
        assert RequestLog.objects.filter(org=self.other_org, user_id=USER).count() == 3
        assert Feedback.objects.filter(org=self.org).count() == 1
        assert Score.objects.filter(org=self.org).count() == 1
        assert Feedback.objects.filter(org=self.other_org).count() == 1
        assert list(WebhookDelivery.objects.values_list("body", flat=True)) == [
            json.dumps(request_payload(self.others[0], False), separators=(",", ":"))]
        assert list(AlertEvent.objects.values_list("group_key", flat=True)) == ["bruno"]

    def assert_audited_without_the_user_id(self, via: str) -> AuditEvent:
        event = AuditEvent.objects.get(action="end_user.erase")
        assert event.org == self.org
        assert event.changes["requests"] == 6 and event.changes["feedback"] == 2 and event.changes["scores"] == 2
        assert event.changes["webhook_deliveries"] == 1 and event.changes["alert_events"] == 1
        assert event.changes["via"] == via
        assert event.target_id.startswith("sha256:")
        assert USER not in json.dumps([event.target_id, event.changes, event.actor_label])
        return event

    def test_command_erases_the_user_in_one_org_only(self):
        out = StringIO()
        call_command("erase_user", "--org", "alice-org", "--user-id", USER, "--batch-size", "4", stdout=out)
        self.assert_only_ana_in_alice_org_is_gone()
        self.assert_audited_without_the_user_id("manage.py erase_user")
        assert "batch 2: 6 log(s) deleted so far" in out.getvalue()
        assert "requests: 6" in out.getvalue()

    def test_command_names_bad_options(self):
        with pytest.raises(CommandError, match="no organization with slug 'nope'"):
            call_command("erase_user", "--org", "nope", "--user-id", USER, stdout=StringIO())
        with pytest.raises(CommandError, match="--user-id must not be empty"):
            call_command("erase_user", "--org", "alice-org", "--user-id", "", stdout=StringIO())
        assert RequestLog.objects.filter(user_id=USER).count() == 9

    def test_api_erases_with_a_write_key_and_reports_counts(self):
        key, raw = self.make_key(scopes=["write"])
        response = self.client.delete(f"/api/v1/users/{quote(USER, safe='')}", HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["user_id"] == USER
        assert (body["requests"], body["feedback"], body["scores"]) == (6, 2, 2)
        assert (body["webhook_deliveries"], body["alert_events"]) == (1, 1)
        self.assert_only_ana_in_alice_org_is_gone()
        event = self.assert_audited_without_the_user_id("api")
        assert event.actor_api_key == key
        # Erasing again is harmless: nothing left.
        again = self.client.delete(f"/api/v1/users/{quote(USER, safe='')}", HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert again.json()["requests"] == 0

    def test_api_needs_the_write_scope(self):
        _, raw = self.make_key(scopes=["read"])
        response = self.client.delete(f"/api/v1/users/{USER}", HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert response.status_code == 403
        assert RequestLog.objects.filter(org=self.org, user_id=USER).count() == 6

    def test_outsider_key_erases_only_in_its_own_org(self):
        _, raw = self.make_key(org=self.other_org, scopes=["write"])
        response = self.client.delete(f"/api/v1/users/{USER}", HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert response.json()["requests"] == 3
        assert RequestLog.objects.filter(org=self.org, user_id=USER).count() == 6
        assert WebhookDelivery.objects.count() == 2 and AlertEvent.objects.count() == 2

    def test_user_ids_with_slashes_are_erased_exactly(self):
        make_logs(self.org, n=2, seed=3, user_id="team/ana")
        _, raw = self.make_key(scopes=["write"])
        response = self.client.delete("/api/v1/users/team%2Fana", HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert response.json()["requests"] == 2
        assert RequestLog.objects.filter(org=self.org, user_id=USER).count() == 6

    def test_rate_limit_counters_of_the_user_are_forgotten(self):
        policy = RatePolicy(quota=10, window=60, segment="user")
        whole_org = RatePolicy(quota=10, window=60)
        keys = {
            "ana": ratelimit._key(self.org.id, "o", policy, USER),
            "bruno": ratelimit._key(self.org.id, "o", policy, "bruno"),
            "org": ratelimit._key(self.org.id, "o", whole_org, ""),
            "foreign": ratelimit._key(self.other_org.id, "o", policy, USER),
        }
        if settings.REDIS_URL:
            import redis

            client = redis.Redis.from_url(redis_url())
            for key in keys.values():
                client.set(key, 3, ex=60)
            remaining = lambda: {name for name, key in keys.items() if client.exists(key)}  # noqa: E731
        else:
            for key in keys.values():
                ratelimit._memory.counters[key] = [3.0, 1e12]
            remaining = lambda: {name for name, key in keys.items() if key in ratelimit._memory.counters}  # noqa: E731
        try:
            _, raw = self.make_key(scopes=["write"])
            response = self.client.delete(f"/api/v1/users/{USER}", HTTP_AUTHORIZATION=f"Bearer {raw}")
            assert response.json()["rate_limit_counters"] == 1
            assert remaining() == {"bruno", "org", "foreign"}
        finally:
            if settings.REDIS_URL:
                client.delete(*keys.values())
            else:
                for key in keys.values():
                    ratelimit._memory.counters.pop(key, None)


class EraseUserPageTests(BaseTestCase):
    def setUp(self):
        make_logs(self.org, n=3, user_id=USER)
        make_logs(self.org, n=2, seed=8, user_id="bruno")

    def test_owner_confirms_then_erases(self):
        self.client.force_login(self.alice)
        users = self.client.get("/o/alice-org/users/")
        assert "/o/alice-org/users/erase/?user_id=ana%40example.com" in users.content.decode()
        confirm = self.client.get("/o/alice-org/users/erase/", {"user_id": USER})
        assert confirm.status_code == 200
        assert "3 logged requests" in confirm.content.decode()
        assert RequestLog.objects.filter(user_id=USER).count() == 3  # a GET changes nothing
        response = self.client.post("/o/alice-org/users/erase/", {"user_id": USER})
        assert response.status_code == 302
        assert not RequestLog.objects.filter(user_id=USER).exists()
        assert RequestLog.objects.filter(user_id="bruno").count() == 2
        event = AuditEvent.objects.get(action="end_user.erase")
        assert event.actor_user == self.alice and event.changes["via"] == "page"

    def test_members_cannot_erase_and_outsiders_get_404(self):
        self.client.force_login(self.bob)
        assert "users/erase/" not in self.client.get("/o/alice-org/users/").content.decode()
        assert self.client.post("/o/alice-org/users/erase/", {"user_id": USER}).status_code == 403
        self.client.force_login(self.charlie)
        assert self.client.post("/o/alice-org/users/erase/", {"user_id": USER}).status_code == 404
        assert RequestLog.objects.filter(user_id=USER).count() == 3

    def test_missing_user_id_is_a_400(self):
        self.client.force_login(self.alice)
        response = self.client.post("/o/alice-org/users/erase/", {"user_id": ""})
        assert response.status_code == 400
        assert "Give the user id" in response.content.decode()
        assert RequestLog.objects.count() == 5
