"""The prompt pages under /o/<slug>/prompts/: list, versions with a diff, new version,
labels, per-version request stats; roles and isolation."""

import json
from decimal import Decimal

from django.test import override_settings

from orgs.models import AuditEvent, Membership, Role
from prompts import actions
from prompts.models import Prompt, PromptVersion
from tests.analytics.helpers import create_log
from tests.base import BaseTestCase, make_personas

BASE = "/o/alice-org/prompts/"
V1 = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "{{question}}"}]
V2 = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{question}}"}]


class PromptPagesTests(BaseTestCase):
    @classmethod
    def setUpTestData(cls):
        with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
            make_personas(cls)
        actor = actions.Actor(user=cls.alice)
        cls.prompt = actions.create_prompt(cls.org, actor=actor, slug="helper", name="Helper", messages=V1,
                                           model="gpt-4o-mini", parameters={"temperature": 0.5})
        actions.create_version(cls.org, cls.prompt, actor=actor, messages=V2, model="gpt-4o-mini",
                               message="shorter answers")
        actions.set_environment(cls.org, cls.prompt, actor=actor, name="production", version=1)

    def test_list_shows_prompts_with_labels_and_request_counts(self):
        create_log(org=self.org, provider="openai", status=200, prompt_id="helper", prompt_version=1)
        self.client.force_login(self.bob)
        response = self.client.get(BASE)
        self.assertContains(response, "helper")
        self.assertContains(response, "production: v1")
        self.assertEqual(response.context["prompts"][0].request_count, 1)
        self.assertEqual(response.context["prompts"][0].version_count, 2)
        self.assertContains(response, 'href="/o/alice-org/prompts/"', html=False)  # the nav link

    def test_versions_page_shows_stats_per_version(self):
        for version, cost, latency in [(1, "0.002", 100), (1, "0.004", 300), (2, None, 50)]:
            create_log(org=self.org, provider="openai", status=200, prompt_id="helper",
                                      prompt_version=version, latency_ms=latency,
                                      cost_usd=Decimal(cost) if cost else None)
        create_log(org=self.other_org, provider="openai", status=200, prompt_id="helper",
                                  prompt_version=1, latency_ms=9999, cost_usd=Decimal("9"))
        self.client.force_login(self.bob)
        response = self.client.get(BASE + "helper/")
        versions = {v.version: v for v in response.context["versions"]}
        self.assertEqual(versions[1].stats["requests"], 2)
        self.assertEqual(versions[1].stats["cost"], Decimal("0.006"))
        self.assertEqual(versions[1].stats["latency"], 200)
        self.assertEqual((versions[2].stats["requests"], versions[2].stats["cost"]), (1, None))
        self.assertContains(response, "$0.006000")
        self.assertContains(response, "200 ms")
        self.assertEqual(versions[1].labels, ["production"])

    def test_unpriced_counts_usage_without_a_price_but_not_failed_calls(self):
        for status in (200, 500):  # tokens and no cost: unpriced only when the call succeeded
            create_log(org=self.org, provider="openai", model="mystery-model", status=status, prompt_id="helper",
                       prompt_version=2, prompt_tokens=10, completion_tokens=5, cost_usd=None)
        self.client.force_login(self.bob)
        response = self.client.get(BASE + "helper/")
        versions = {v.version: v for v in response.context["versions"]}
        self.assertEqual((versions[2].stats["requests"], versions[2].stats["unpriced"]), (2, 1))

    def test_diff_between_two_versions(self):
        self.client.force_login(self.bob)
        response = self.client.get(BASE + "helper/")
        self.assertEqual((response.context["a"], response.context["b"]), (1, 2))
        lines = response.context["diff"]
        self.assertIn(("del", "-Be kind."), lines)
        self.assertIn(("add", "+Be brief."), lines)
        self.assertIn(("del", '-parameters: {"temperature": 0.5}'), lines)
        response = self.client.get(BASE + "helper/?a=2&b=2")
        self.assertEqual(response.context["diff"], [])
        self.assertContains(response, "are identical")

    def test_version_page(self):
        self.client.force_login(self.bob)
        response = self.client.get(BASE + "helper/versions/2/")
        self.assertContains(response, "shorter answers")
        self.assertContains(response, "Be brief.")
        self.assertEqual(self.client.get(BASE + "helper/versions/7/").status_code, 404)

    def test_member_creates_a_version_from_the_form(self):
        self.client.force_login(self.bob)
        response = self.client.get(BASE + "helper/versions/new/")
        self.assertContains(response, "Be brief.")  # starts from the latest
        response = self.client.post(BASE + "helper/versions/new/", {
            "messages": json.dumps([{"role": "user", "content": "{{hc:question:string}}?"}]),
            "model": "gpt-4o", "parameters": '{"max_tokens": 64}', "message": "typed",
        })
        self.assertRedirects(response, BASE + "helper/")
        v3 = PromptVersion.objects.get(prompt=self.prompt, version=3)
        self.assertEqual((v3.model, v3.parameters, v3.author, v3.message), ("gpt-4o", {"max_tokens": 64}, self.bob,
                                                                            "typed"))
        event = AuditEvent.objects.get(action="prompt.version.create", changes__version=3)
        self.assertEqual(event.actor_user, self.bob)

    def test_version_form_errors_name_the_field(self):
        self.client.force_login(self.bob)
        response = self.client.post(BASE + "helper/versions/new/", {
            "messages": '[{"role": "user", "content": "{{hc:x:date}}"}]', "model": "m",
            "parameters": '{"temperature": 9}'})
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "Messages: unknown type &#x27;date&#x27;", status_code=400)
        self.assertContains(response, "Parameters: temperature must be a number between 0 and 2", status_code=400)
        response = self.client.post(BASE + "helper/versions/new/", {
            "messages": json.dumps(V2), "model": "gpt-4o-mini", "parameters": "{}"})
        self.assertContains(response, "identical to version 2", status_code=400)

    def test_member_moves_a_label(self):
        self.client.force_login(self.bob)
        response = self.client.post(BASE + "helper/environments/", {"environment": "production", "version": 2})
        self.assertRedirects(response, BASE + "helper/")
        self.assertEqual(self.prompt.environments.get(name="production").version.version, 2)
        response = self.client.post(BASE + "helper/environments/", {"environment": "production", "version": 9},
                                    follow=True)
        self.assertContains(response, "has no version 9")

    def test_member_creates_a_prompt(self):
        self.client.force_login(self.bob)
        response = self.client.post(BASE, {
            "id": "new-one", "name": "New", "description": "", "model": "gpt-4o-mini",
            "messages": json.dumps(V1), "parameters": "", "message": ""})
        self.assertRedirects(response, BASE + "new-one/")
        self.assertEqual(Prompt.objects.get(org=self.org, slug="new-one").versions.get().version, 1)
        response = self.client.post(BASE, {"id": "new-one", "name": "Again", "model": "m",
                                           "messages": json.dumps(V1)})
        self.assertContains(response, "already exists", status_code=400)

    def test_viewer_reads_but_cannot_change(self):
        Membership.objects.filter(pk=self.bob_membership.pk).update(role=Role.VIEWER)
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(BASE + "helper/").status_code, 200)
        self.assertNotContains(self.client.get(BASE + "helper/"), "New version")
        self.assertEqual(self.client.get(BASE + "helper/versions/new/").status_code, 403)
        self.assertEqual(self.client.post(BASE + "helper/environments/",
                                          {"environment": "production", "version": 2}).status_code, 403)
        self.assertEqual(self.client.post(BASE, {"id": "x"}).status_code, 403)
        self.assertEqual(self.prompt.environments.get(name="production").version.version, 1)

    def test_outsider_gets_404_on_every_page(self):
        self.client.force_login(self.charlie)
        for path in ("", "helper/", "helper/versions/1/", "helper/versions/new/"):
            with self.subTest(path=path):
                self.assertEqual(self.client.get(BASE + path).status_code, 404)
        self.assertEqual(self.client.post(BASE + "helper/environments/",
                                          {"environment": "production", "version": 2}).status_code, 404)
        # Their own org has no such prompt either.
        self.assertEqual(self.client.get("/o/charlie-org/prompts/helper/").status_code, 404)

    def test_anonymous_is_sent_to_login(self):
        response = self.client.get(BASE)
        self.assertEqual(response.status_code, 302)
        self.assertIn("/login/", response["Location"])
