"""Tenant isolation over every URL pattern the project serves, built from Django's resolver.

`CASES` says, for each pattern, who may use it and which URL exercises it with
alice-org's objects. A pattern without a case fails `test_every_url_pattern_has_a_case`,
naming it: whoever adds a route adds a line here saying how an outsider is refused.

The outsider is charlie (owner of charlie-org): on alice-org's pages he gets 404
for GET and POST, the same as for an org that does not exist; with charlie-org's
API key he gets 404 for alice-org's ids and sees none of its rows in lists; the
admin sends him to its login; the live WebSocket refuses him.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client, TransactionTestCase, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone

from analytics.models import AlertRule, RequestLog, Webhook
from analytics.routing import websocket_urlpatterns
from heliconeproj.asgi import application
from orgs.models import ApiKey, AuditEvent, Invitation, Membership
from prompts.models import Prompt, PromptVersion
from tests.analytics.helpers import create_log
from tests.base import make_personas
from tests.orgs.helpers import FAST_HASHERS, OrgsTestCase

# --- The table ------------------------------------------------------------------------------------
# kind:
#   public   anyone, no org data (login, sign-up, password reset, API docs)
#   account  needs a login, shows only the user's own things
#   org      an /o/<slug>/ page: outsiders get 404 for GET and POST
#   api      Authorization: Bearer <key>: another org's key gets 404 (ids) or only its own rows (lists)
#   staff    the Django admin: anyone who is not verified staff is sent to its login
# url: a format string over the objects made in setUpTestData (`{slug}`, `{member}`, `{key}`, …).


@dataclass(frozen=True)
class Case:
    kind: str
    url: str
    # api: "detail" (an id of alice-org: 404) or "list" (alice-org's rows never listed); "taken-id": a write
    # naming alice-org's log id as its own (409)
    api: str = ""
    api_method: str = "get"
    body: dict = field(default_factory=dict)
    scopes: tuple[str, ...] = ("read",)  # api: a key with any of these may call it


def drf(url: str, api: str, method: str = "get", body: dict | None = None) -> dict[str, Case]:
    base = "api/v1/prompts/" + url
    concrete = "/" + (re.sub(r"\^|\$", "", base).replace("(?P<id>[A-Za-z0-9][A-Za-z0-9_-]*)", "{prompt}")
                      .replace("(?P<version>[0-9]+)", "1"))
    return {base: Case("api", concrete, api, method, body or {})}


WRITE = ("write",)
# An OTLP/JSON export of one LLM span.
OTLP_EXPORT = {"resourceSpans": [{"scopeSpans": [{"spans": [{
    "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "openai.chat",
    "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
    "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                   {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                   {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}}]}]}]}]}

# Helicone's async log body, with alice-org's log id as its Helicone-Request-Id ("{log}" is filled in).
HELICONE_LOG = {"providerRequest": {"url": "custom-model-nopath", "json": {"model": "gpt-4o-mini"},
                                    "meta": {"Helicone-Request-Id": "{log}"}},
                "providerResponse": {"status": 200, "headers": {}, "json": {}}}
LOG_SCOPES = ("log", "proxy", "write")


CASES: dict[str, Case] = {
    # Public
    "": Case("public", "/"),
    "signup/": Case("public", "/signup/"),
    "login/": Case("public", "/login/"),
    "login/2fa/": Case("public", "/login/2fa/"),
    "logout/": Case("public", "/logout/"),
    "password-reset/": Case("public", "/password-reset/"),
    "password-reset/sent/": Case("public", "/password-reset/sent/"),
    "password-reset/<uidb64>/<token>/": Case("public", "/password-reset/MQ/not-a-token/"),
    "password-reset/done/": Case("public", "/password-reset/done/"),
    # The signed token is the capability (its holder sees the invitation): a forged one shows nothing.
    "invite/<str:token>/": Case("public", "/invite/{invitation}x/"),
    "api/v1/openapi.json": Case("public", "/api/v1/openapi.json"),
    "api/v1/docs": Case("public", "/api/v1/docs"),
    "favicon.ico": Case("public", "/favicon.ico"),  # a redirect to the static icon
    # The user's own account
    "account/2fa/": Case("account", "/account/2fa/"),
    "account/password/": Case("account", "/account/password/"),
    "account/password/done/": Case("account", "/account/password/done/"),
    "orgs/": Case("account", "/orgs/"),
    # Organization pages
    "o/<slug:slug>/": Case("org", "/o/{slug}/"),
    "o/<slug:slug>/settings/": Case("org", "/o/{slug}/settings/"),
    "o/<slug:slug>/settings/rate-limits/": Case("org", "/o/{slug}/settings/rate-limits/"),
    "o/<slug:slug>/settings/semantic-cache/": Case("org", "/o/{slug}/settings/semantic-cache/"),
    "o/<slug:slug>/settings/members/": Case("org", "/o/{slug}/settings/members/"),
    "o/<slug:slug>/settings/members/<int:member_id>/role/": Case("org", "/o/{slug}/settings/members/{member}/role/"),
    "o/<slug:slug>/settings/members/<int:member_id>/remove/":
        Case("org", "/o/{slug}/settings/members/{member}/remove/"),
    "o/<slug:slug>/settings/keys/": Case("org", "/o/{slug}/settings/keys/"),
    "o/<slug:slug>/settings/keys/<int:key_id>/revoke/": Case("org", "/o/{slug}/settings/keys/{key}/revoke/"),
    "o/<slug:slug>/settings/audit/": Case("org", "/o/{slug}/settings/audit/"),
    "o/<slug:slug>/settings/audit/export.csv": Case("org", "/o/{slug}/settings/audit/export.csv"),
    "o/<slug:slug>/requests/": Case("org", "/o/{slug}/requests/"),
    "o/<slug:slug>/requests/<uuid:log_id>/": Case("org", "/o/{slug}/requests/{log}/"),
    "o/<slug:slug>/requests/views/": Case("org", "/o/{slug}/requests/views/"),
    # Saved views are reached through the membership's org: another org's view id is a 404 too.
    "o/<slug:slug>/requests/views/<int:view_id>/delete/": Case("org", "/o/{slug}/requests/views/1/delete/"),
    "o/<slug:slug>/requests/<uuid:log_id>/feedback/": Case("org", "/o/{slug}/requests/{log}/feedback/"),
    "o/<slug:slug>/requests/<uuid:log_id>/score/": Case("org", "/o/{slug}/requests/{log}/score/"),
    "o/<slug:slug>/sessions/": Case("org", "/o/{slug}/sessions/"),
    "o/<slug:slug>/sessions/<path:session_id>/": Case("org", "/o/{slug}/sessions/{session}/"),
    "o/<slug:slug>/users/": Case("org", "/o/{slug}/users/"),
    "o/<slug:slug>/users/erase/": Case("org", "/o/{slug}/users/erase/?user_id=u-alice"),
    "o/<slug:slug>/user/": Case("org", "/o/{slug}/user/?id=u-alice"),
    "o/<slug:slug>/settings/export/": Case("org", "/o/{slug}/settings/export/"),
    "o/<slug:slug>/alerts/": Case("org", "/o/{slug}/alerts/"),
    "o/<slug:slug>/alerts/new/": Case("org", "/o/{slug}/alerts/new/"),
    "o/<slug:slug>/alerts/<int:rule_id>/": Case("org", "/o/{slug}/alerts/{rule}/"),
    "o/<slug:slug>/alerts/<int:rule_id>/mute/": Case("org", "/o/{slug}/alerts/{rule}/mute/"),
    "o/<slug:slug>/alerts/<int:rule_id>/test/": Case("org", "/o/{slug}/alerts/{rule}/test/"),
    "o/<slug:slug>/alerts/<int:rule_id>/delete/": Case("org", "/o/{slug}/alerts/{rule}/delete/"),
    "o/<slug:slug>/alerts/history/": Case("org", "/o/{slug}/alerts/history/"),
    "o/<slug:slug>/alerts/open.json": Case("org", "/o/{slug}/alerts/open.json"),
    "o/<slug:slug>/alerts/webhooks/": Case("org", "/o/{slug}/alerts/webhooks/"),
    "o/<slug:slug>/alerts/webhooks/<int:webhook_id>/delete/":
        Case("org", "/o/{slug}/alerts/webhooks/{webhook}/delete/"),
    "o/<slug:slug>/alerts/deliveries/": Case("org", "/o/{slug}/alerts/deliveries/"),
    "o/<slug:slug>/prompts/": Case("org", "/o/{slug}/prompts/"),
    "o/<slug:slug>/prompts/<str:prompt_id>/": Case("org", "/o/{slug}/prompts/{prompt}/"),
    "o/<slug:slug>/prompts/<str:prompt_id>/versions/new/": Case("org", "/o/{slug}/prompts/{prompt}/versions/new/"),
    "o/<slug:slug>/prompts/<str:prompt_id>/versions/<int:version>/":
        Case("org", "/o/{slug}/prompts/{prompt}/versions/1/"),
    "o/<slug:slug>/prompts/<str:prompt_id>/environments/":
        Case("org", "/o/{slug}/prompts/{prompt}/environments/"),
    # The request API (django-ninja)
    "api/v1/": Case("public", "/api/v1/"),
    "api/v1/requests": Case("api", "/api/v1/requests", "list"),
    "api/v1/requests/<request_id>": Case("api", "/api/v1/requests/{log}", "detail"),
    "api/v1/metrics/summary": Case("api", "/api/v1/metrics/summary", "list"),
    "api/v1/metrics/timeseries": Case("api", "/api/v1/metrics/timeseries", "list"),
    "api/v1/requests/<request_id>/feedback":
        Case("api", "/api/v1/requests/{log}/feedback", "detail", "post", {"rating": True}, WRITE),
    "api/v1/requests/<request_id>/scores":
        Case("api", "/api/v1/requests/{log}/scores", "detail", "post", {"scores": {"accuracy": 1}}, WRITE),
    "api/v1/requests/<request_id>/property":
        Case("api", "/api/v1/requests/{log}/property", "detail", "put", {"key": "Pwned", "value": "yes"}, WRITE),
    "api/v1/log": Case("api", "/api/v1/log", "list", "post", {
        "providerRequest": {"url": "https://api.openai.com/v1/chat/completions", "json": {"model": "gpt-4o-mini"},
                            "meta": {}},
        "providerResponse": {"status": 200, "headers": {}, "json": {}}}, ("proxy", "write")),
    # OpenTelemetry ingest: a key writes spans into its own org only (the org is never taken from the body).
    **{path: Case("api", "/" + path, "list", "post", OTLP_EXPORT, ("proxy", "write"))
       for path in ("v1/traces", "v1/trace/log", "v1/trace/log-python")},
    # Helicone's own API (analytics/helicone_api.py). Its logging endpoints write into the key's org only:
    # another org's log id is refused (409), the org's own is a replay that adds nothing.
    "v1/openapi.json": Case("public", "/v1/openapi.json"),
    "v1/docs": Case("public", "/v1/docs"),
    **{path: Case("api", "/" + path, "taken-id", "post", HELICONE_LOG, LOG_SCOPES)
       for path in ("custom/v1/log", "oai/v1/log", "anthropic/v1/log", "googleapis/v1/log", "v1/trace/custom/v1/log",
                    "v1/trace/custom/log")},
    "v1/request/query": Case("api", "/v1/request/query", "list", "post", {"filter": "all"}),
    "v1/request/query-clickhouse": Case("api", "/v1/request/query-clickhouse", "list", "post", {"filter": "all"}),
    "v1/request/query-ids": Case("api", "/v1/request/query-ids", "list", "post", {"requestIds": ["{log}"]}),
    "v1/request/<request_id>": Case("api", "/v1/request/{log}", "detail"),
    "v1/request/<request_id>/feedback":
        Case("api", "/v1/request/{log}/feedback", "detail", "post", {"rating": True}, WRITE),
    "v1/request/<request_id>/score":
        Case("api", "/v1/request/{log}/score", "detail", "post", {"scores": {"accuracy": 1}}, WRITE),
    "v1/request/<request_id>/property":
        Case("api", "/v1/request/{log}/property", "detail", "put", {"key": "Pwned", "value": "yes"}, WRITE),
    "v1/session/query": Case("api", "/v1/session/query", "list", "post", {
        "search": "", "timezoneDifference": 0, "filter": "all",
        "timeFilter": {"startTimeUnixMs": 0, "endTimeUnixMs": 4102444800000}}),
    "v1/user/metrics/query": Case("api", "/v1/user/metrics/query", "list", "post",
                                  {"filter": "all", "offset": 0, "limit": 100}),
    "v1/prompt-2025/query/version": Case("api", "/v1/prompt-2025/query/version", "detail", "post",
                                         {"promptVersionId": "alice-prompt:1"}),
    "v1/prompt-2025/query/production-version": Case("api", "/v1/prompt-2025/query/production-version", "detail",
                                                    "post", {"promptId": "alice-prompt"}),
    "v1/prompt-2025/query/environment-version": Case("api", "/v1/prompt-2025/query/environment-version",
                                                     "detail", "post",
                                                     {"promptId": "alice-prompt", "environment": "production"}),
    # A prompt body behind a signed, expiring link (the signature is the permission): a bad token is a 404.
    "v1/prompt-2025/body/<token>": Case("public", "/v1/prompt-2025/body/not-a-token"),
    # Erasing an end user: always in the key's own org (another org's user of the same id is untouched).
    "api/v1/users/<path:user_id>": Case("api", "/api/v1/users/u-alice", "own-org", "delete", {}, WRITE),
    # The prompts API (DRF)
    **drf("^$", "list"),
    **drf("^(?P<id>[A-Za-z0-9][A-Za-z0-9_-]*)/$", "detail"),
    **drf("^(?P<id>[A-Za-z0-9][A-Za-z0-9_-]*)/environments/$", "detail"),
    **drf("^(?P<id>[A-Za-z0-9][A-Za-z0-9_-]*)/render/$", "detail", "post", {"variables": {}}),
    **drf("^(?P<id>[A-Za-z0-9][A-Za-z0-9_-]*)/versions/(?P<version>[0-9]+)/$", "detail"),
    **drf("^(?P<id>[A-Za-z0-9][A-Za-z0-9_-]*)/versions/$", "detail"),
}
# Every admin route (ModelAdmins add theirs automatically) is for verified staff only.
STAFF_PREFIX = "admin/"
WEBSOCKET_CASES = {"ws/orgs/<slug:slug>/live/": "/ws/orgs/{slug}/live/"}


def url_patterns(patterns=None, prefix: str = ""):
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from url_patterns(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def staff_url(pattern: str) -> str:
    """A concrete URL for an admin route (its objects need not exist: the login comes first)."""
    url = re.sub(r"\^\(\?P<app_label>(\w+)[\w|]*\)/\$", r"\1/", pattern)  # the first app label
    url = url.replace("(?P<url>.*)$", "no-such-page/")
    return "/" + re.sub(r"<(?:\w+:)?\w+>", "1", url)


class OrgObjectsTestCase(OrgsTestCase):
    """alice-org with one object of every kind the URL table names, and keys for both orgs."""

    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.key, cls.raw = ApiKey.generate(cls.org, "alice", ["proxy", "read", "write"], created_by=cls.alice)
        cls.other_key, cls.other_raw = ApiKey.generate(cls.other_org, "charlie", ["proxy", "read", "write"],
                                                       created_by=cls.charlie)
        cls.log = create_log(org=cls.org, provider="openai", model="gpt-4o-mini", status=200,
                                            session_id="s-alice", user_id="u-alice", created_at=timezone.now())
        cls.rule = AlertRule.objects.create(org=cls.org, name="errors", metric="error_rate", threshold=5)
        cls.webhook = Webhook.objects.create(org=cls.org, url="https://hooks.example.org/x", secret="s")
        cls.prompt = Prompt.objects.create(org=cls.org, slug="alice-prompt", name="Alice prompt")
        PromptVersion.objects.create(org=cls.org, prompt=cls.prompt, version=1, model="gpt-4o-mini",
                                     messages=[{"role": "user", "content": "hi"}], template_hash="x")
        invitation = Invitation.objects.create(org=cls.org, email="invitee@example.org", role="member",
                                               invited_by=cls.alice)
        from orgs.actions import invitation_token

        cls.objects = {
            "slug": "alice-org", "member": cls.bob_membership.pk, "key": cls.key.pk, "log": cls.log.pk,
            "session": "s-alice", "rule": cls.rule.pk, "webhook": cls.webhook.pk, "prompt": "alice-prompt",
            "invitation": invitation_token(invitation),
        }

    def url(self, case: Case, **override) -> str:
        return case.url.format(**{**self.objects, **override})


class UrlTableTests(OrgObjectsTestCase):
    def test_every_url_pattern_has_a_case(self):
        missing = [p for p in url_patterns() if p not in CASES and not p.startswith(STAFF_PREFIX)]
        self.assertEqual(missing, [], "URL patterns without an isolation case: add each to CASES in "
                                      "tests/reliability/test_security_isolation.py, saying how an outsider is "
                                      "refused (kind org/api/staff) or that it is public/account")
        stale = sorted(set(CASES) - set(url_patterns()))
        self.assertEqual(stale, [], "CASES names patterns that no longer exist")

    def test_each_case_url_reaches_its_pattern(self):
        for pattern, case in CASES.items():
            with self.subTest(pattern=pattern):
                self.assertEqual(resolve(self.url(case).split("?")[0]).route, pattern.replace("^", ""))
        for pattern in url_patterns():
            if pattern.startswith(STAFF_PREFIX):
                with self.subTest(pattern=pattern):
                    self.assertEqual(resolve(staff_url(pattern)).route, pattern.replace("^", ""))

    def test_outsider_gets_404_on_every_org_page_for_get_and_post(self):
        body = {"role": "owner", "email": "charlie@example.org", "name": "pwned", "scopes": ["proxy"],
                "environment": "production", "version": "1", "muted": "1", "user_id": "u-alice"}
        events = AuditEvent.objects.count()
        for pattern, case in CASES.items():
            if case.kind != "org":
                continue
            url = self.url(case)
            with self.subTest(pattern=pattern, who="member"):
                # The URL is right: a member of alice-org is not refused with 404.
                self.client.force_login(self.alice)
                self.assertNotIn(self.client.get(url).status_code, (404, 500), url)
            self.client.force_login(self.charlie)
            events = AuditEvent.objects.count()
            for method in ("get", "post"):
                # POST is always 404. A GET of a POST-only view may be 405 before any lookup: the same
                # for every org, so it tells nothing; what matters is that alice-org looks missing.
                allowed = (404,) if method == "post" else (404, 405)
                data = body if method == "post" else None
                with self.subTest(pattern=pattern, method=method, who="outsider"):
                    status = getattr(self.client, method)(url, data).status_code
                    self.assertIn(status, allowed, f"{method.upper()} {url}")
                    missing = self.url(case, slug="no-such-org")
                    self.assertEqual(getattr(self.client, method)(missing, data).status_code, status)
                own = self.url(case, slug="charlie-org")
                if re.search(r"\{(?!slug)", case.url):
                    with self.subTest(pattern=pattern, method=method, who="outsider, own slug, alice's ids"):
                        self.assertIn(getattr(self.client, method)(own, data).status_code, allowed,
                                      f"{method.upper()} {own}")
            self.assertEqual(AuditEvent.objects.count(), events, f"an outsider's request to {url} changed something")
            self.client.logout()
            with self.subTest(pattern=pattern, who="anonymous"):
                response = self.client.get(url)
                self.assertIn(response.status_code, (302, 405))
                if response.status_code == 302:
                    self.assertTrue(response["Location"].startswith("/login/?next="), response["Location"])
        # Nothing of alice-org changed.
        self.assertTrue(RequestLog.objects.filter(pk=self.log.pk).exists())
        self.assertIsNotNone(ApiKey.find_active(self.raw))
        self.assertTrue(Membership.objects.filter(pk=self.bob_membership.pk, role="member").exists())
        self.assertTrue(AlertRule.objects.filter(pk=self.rule.pk, muted=False).exists())
        self.assertTrue(Webhook.objects.filter(pk=self.webhook.pk).exists())
        self.assertEqual(Prompt.objects.get(pk=self.prompt.pk).environments.count(), 0)
        self.org.refresh_from_db()
        self.assertEqual(self.org.name, "Alice Org")

    def api_call(self, case: Case, raw: str):
        url = self.url(case)
        call = getattr(self.client, case.api_method)
        auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
        if case.api_method == "get":
            return call(url, **auth)
        body = json.loads(json.dumps(case.body).replace("{log}", str(self.log.pk)))
        return call(url, body, content_type="application/json", **auth)

    def test_another_orgs_key_gets_404_for_ids_and_never_lists_them(self):
        api_cases = {pattern: case for pattern, case in CASES.items() if case.kind == "api"}
        for pattern, case in api_cases.items():
            with self.subTest(pattern=pattern, who="charlie-org's key"):
                response = self.api_call(case, self.other_raw)
                if case.api == "detail":
                    self.assertEqual(response.status_code, 404, self.url(case))
                elif case.api == "own-org":
                    self.assertEqual(response.status_code, 200, response.content)
                    self.assertEqual(response.json()["requests"], 0)
                elif case.api == "taken-id":
                    self.assertEqual(response.status_code, 409, response.content)
                else:
                    self.assertLess(response.status_code, 300, response.content)
                    text = response.content.decode()
                    for secret in (str(self.log.pk), "alice-prompt", "u-alice"):
                        self.assertNotIn(secret, text)
                    if "metrics/summary" in pattern:
                        self.assertEqual(response.json()["count"], 0)
            with self.subTest(pattern=pattern, who="no key"):
                self.assertIn(getattr(self.client, case.api_method)(self.url(case)).status_code, (401, 403))
        # The key's org is the only org written to (or erased from).
        self.assertTrue(RequestLog.objects.filter(pk=self.log.pk).exists())
        self.assertFalse(RequestLog.objects.filter(org=self.org).exclude(pk=self.log.pk).exists())
        self.log.refresh_from_db()
        self.assertNotIn("Pwned", self.log.properties)
        for pattern, case in api_cases.items():
            if case.api in ("detail", "taken-id"):
                with self.subTest(pattern=pattern, who="alice-org's key"):
                    # The same URLs work for the org's own key: the 404s above are isolation.
                    self.assertLess(self.api_call(case, self.raw).status_code, 400, self.url(case))

    def test_every_api_route_enforces_its_key_scopes(self):
        keys = {scope: ApiKey.generate(self.org, scope, [scope], created_by=self.alice)[1]
                for scope in ("proxy", "read", "write")}
        for pattern, case in CASES.items():
            if case.kind != "api":
                continue
            for scope, raw in keys.items():
                with self.subTest(pattern=pattern, scope=scope):
                    response = self.api_call(case, raw)
                    if scope in case.scopes:
                        self.assertNotIn(response.status_code, (401, 403), response.content)
                    else:
                        self.assertEqual(response.status_code, 403, response.content)
                        self.assertIn("scope", response.content.decode())

    def test_a_logged_in_outsider_cannot_pick_another_org_in_the_browsable_api(self):
        self.client.force_login(self.charlie)
        for pattern, case in CASES.items():
            if case.kind == "api" and pattern.startswith("api/v1/prompts/"):
                with self.subTest(pattern=pattern):
                    call = getattr(self.client, case.api_method)
                    url = self.url(case) + "?org=alice-org"
                    response = call(url) if case.api_method == "get" else call(url, case.body,
                                                                                 content_type="application/json")
                    self.assertEqual(response.status_code, 404)

    def test_account_pages_show_only_the_users_own_things(self):
        for pattern, case in CASES.items():
            if case.kind != "account":
                continue
            self.client.logout()
            with self.subTest(pattern=pattern, who="anonymous"):
                response = self.client.get(self.url(case))
                self.assertEqual(response.status_code, 302)
                self.assertTrue(response["Location"].startswith("/login/"))
            self.client.force_login(self.charlie)
            with self.subTest(pattern=pattern, who="outsider"):
                response = self.client.get(self.url(case))
                self.assertEqual(response.status_code, 200)
                self.assertNotContains(response, "Alice Org")
                self.assertNotContains(response, "alice@example.org")

    def test_public_pages_answer_anyone_without_org_data(self):
        for pattern, case in CASES.items():
            if case.kind != "public":
                continue
            with self.subTest(pattern=pattern):
                response = self.client.get(self.url(case))
                self.assertLess(response.status_code, 500)
                self.assertNotIn(b"Alice Org", response.content)

    def test_invitation_page_of_someone_else_cannot_be_accepted(self):
        self.client.force_login(self.charlie)
        response = self.client.post(f"/invite/{self.objects['invitation']}/")
        self.assertLess(response.status_code, 500)
        self.assertFalse(Membership.objects.filter(org=self.org, user=self.charlie).exists())

    def test_admin_refuses_everyone_but_verified_staff(self):
        self.client.force_login(self.charlie)
        for pattern in url_patterns():
            if not pattern.startswith(STAFF_PREFIX) or pattern in ("admin/login/", "admin/logout/", "admin/jsi18n/"):
                continue
            url = staff_url(pattern)
            for method in ("get", "post"):
                with self.subTest(pattern=pattern, method=method):
                    response = getattr(self.client, method)(url)
                    self.assertIn(response.status_code, (302, 404), url)
                    if response.status_code == 302:
                        self.assertTrue(response["Location"].startswith("/admin/login/"), response["Location"])
        self.assertEqual(Membership.objects.filter(org=self.org).count(), 2)


class WebSocketIsolationTests(TransactionTestCase):
    # Channels' database_sync_to_async closes connections: this needs real transactions.

    def setUp(self):
        with override_settings(PASSWORD_HASHERS=FAST_HASHERS):
            make_personas(self)
        self.other_key, self.other_raw = ApiKey.generate(self.other_org, "charlie", ["read"],
                                                         created_by=self.charlie)
        self.key, self.raw = ApiKey.generate(self.org, "alice", ["read"], created_by=self.alice)

    def test_every_websocket_pattern_has_a_case(self):
        patterns = [str(p.pattern) for p in websocket_urlpatterns]
        self.assertEqual(sorted(set(patterns) - set(WEBSOCKET_CASES)), [],
                         "WebSocket patterns without a case: add them to WEBSOCKET_CASES")

    def connects(self, path: str, headers) -> bool:
        async def attempt():
            communicator = WebsocketCommunicator(application, path, headers=headers)
            connected, _ = await communicator.connect()
            await communicator.disconnect()
            return connected

        return async_to_sync(attempt)()

    def session_headers(self, user):
        client = Client()
        client.force_login(user)
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        return [(b"cookie", cookie.encode()), (b"origin", b"http://127.0.0.1:8000")]

    def test_outsiders_are_refused_members_and_keys_of_the_org_accepted(self):
        for pattern, template in WEBSOCKET_CASES.items():
            path = template.format(slug="alice-org")
            with self.subTest(pattern=pattern):
                self.assertTrue(self.connects(path, self.session_headers(self.bob)))
                self.assertTrue(self.connects(path, [(b"authorization", f"Bearer {self.raw}".encode())]))
                self.assertFalse(self.connects(path, self.session_headers(self.charlie)))
                self.assertFalse(self.connects(path, [(b"authorization", f"Bearer {self.other_raw}".encode())]))
                self.assertFalse(self.connects(template.format(slug=f"no-such-{uuid.uuid4().hex[:6]}"),
                                               self.session_headers(self.charlie)))
