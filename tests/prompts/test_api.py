"""The prompts REST API end to end: create, version, label, render, isolation, scopes, audit."""

from orgs.models import AuditEvent, Membership, Role
from prompts.models import Prompt, PromptVersion
from django.test import override_settings

from tests.base import BaseTestCase, make_personas

URL = "/api/v1/prompts/"
MESSAGES = [
    {"role": "system", "content": "You answer questions about {{company}}."},
    {"role": "user", "content": "{{question}} (in {{hc:words:number}} words)"},
]
CREATE = {
    "id": "support-answer", "name": "Support answer", "description": "First-line support",
    "messages": MESSAGES, "model": "gpt-4o-mini", "parameters": {"temperature": 0.2, "max_tokens": 200},
}


class PromptApiTestCase(BaseTestCase):
    @classmethod
    def setUpTestData(cls):
        # Before the conftest's fast-hasher fixture applies: keep creating the personas fast.
        with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
            make_personas(cls)

    def setUp(self):
        self.key, self.raw = self.make_key(scopes=("read", "write"))
        self.auth = {"HTTP_AUTHORIZATION": f"Bearer {self.raw}"}

    def api(self, method: str, path: str = "", data=None, auth=None):
        call = getattr(self.client, method)
        kwargs = {"content_type": "application/json"} if data is not None else {}
        return call(URL + path, data, **kwargs, **(self.auth if auth is None else auth)) if data is not None \
            else call(URL + path, **(self.auth if auth is None else auth))

    def create(self, **overrides):
        response = self.api("post", data={**CREATE, **overrides})
        self.assertEqual(response.status_code, 201, response.content)
        return response.json()


class CreateAndReadTests(PromptApiTestCase):
    def test_create_makes_version_1_and_reads_back(self):
        body = self.create()
        self.assertEqual(body["id"], "support-answer")
        self.assertEqual(body["latest_version"], 1)
        self.assertEqual(body["source"], "api")
        self.assertNotIn("messages", body, "content lives on versions")

        listed = self.api("get").json()
        self.assertEqual(listed["count"], 1)
        self.assertEqual(listed["results"][0]["id"], "support-answer")

        version = self.api("get", "support-answer/versions/1/").json()
        self.assertEqual(version["version"], 1)
        self.assertEqual(version["messages"], MESSAGES)
        self.assertEqual(version["model"], "gpt-4o-mini")
        self.assertEqual(version["parameters"], {"temperature": 0.2, "max_tokens": 200})
        self.assertEqual(version["variables"], [
            {"name": "company", "type": "any"}, {"name": "question", "type": "any"},
            {"name": "words", "type": "number"},
        ])
        self.assertEqual(version["author"], f"api key {self.key.masked}")

    def test_duplicate_id_in_the_org_is_a_400_naming_id(self):
        self.create()
        response = self.api("post", data=CREATE)
        self.assertEqual(response.status_code, 400)
        self.assertIn("already exists", response.json()["id"][0])

    def test_same_id_in_another_org_is_fine(self):
        self.create()
        _, other_raw = self.make_key(org=self.other_org, scopes=("read", "write"))
        response = self.api("post", data=CREATE, auth={"HTTP_AUTHORIZATION": f"Bearer {other_raw}"})
        self.assertEqual(response.status_code, 201)

    def test_validation_errors_name_the_field(self):
        cases = [
            ({"id": "has space"}, "id", "letters, digits"),
            ({"messages": []}, "messages", "non-empty list"),
            ({"messages": [{"role": "user", "content": "{{hc:x:date}}"}]}, "messages", "unknown type 'date'"),
            ({"messages": [{"content": "hi"}]}, "messages", "message 1 needs a 'role'"),
            ({"parameters": {"temperature": 5}}, "parameters", "temperature must be a number between 0 and 2"),
            ({"parameters": [1]}, "parameters", "must be a JSON object"),
            ({"model": ""}, "model", "blank"),
        ]
        for overrides, field, text in cases:
            with self.subTest(field=field, overrides=overrides):
                response = self.api("post", data={**CREATE, **overrides})
                self.assertEqual(response.status_code, 400)
                self.assertIn(text, " ".join(response.json()[field]))
        response = self.api("post", data={"id": "x"})
        self.assertEqual(set(response.json()), {"name", "messages", "model"})
        self.assertFalse(Prompt.objects.exists())

    def test_patch_changes_name_and_description_only(self):
        self.create()
        response = self.api("patch", "support-answer/", {"name": "Support", "description": "New"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual((response.json()["name"], response.json()["description"]), ("Support", "New"))
        response = self.api("patch", "support-answer/", {"id": "renamed", "messages": MESSAGES})
        self.assertEqual(response.status_code, 400)
        self.assertIn("cannot be changed", response.json()["id"][0])
        self.assertIn("POST a new version", response.json()["messages"][0])

    def test_delete_removes_prompt_and_versions(self):
        self.create()
        self.assertEqual(self.api("delete", "support-answer/").status_code, 204)
        self.assertEqual(self.api("get", "support-answer/").status_code, 404)
        self.assertFalse(PromptVersion.objects.exists())


class VersionTests(PromptApiTestCase):
    def test_new_versions_are_numbered_and_listed_newest_first(self):
        self.create()
        v2 = {"messages": [{"role": "user", "content": "{{question}}"}], "model": "gpt-4o", "message": "shorter"}
        response = self.api("post", "support-answer/versions/", v2)
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["version"], 2)
        self.assertEqual(response.json()["message"], "shorter")
        self.assertEqual(response.json()["parameters"], {})
        response = self.api("post", "support-answer/versions/", {**v2, "parameters": {"temperature": 1}})
        self.assertEqual(response.json()["version"], 3)

        items = self.api("get", "support-answer/versions/").json()["results"]
        self.assertEqual([item["version"] for item in items], [3, 2, 1])
        self.assertEqual(self.api("get", "support-answer/").json()["latest_version"], 3)

    def test_an_identical_version_is_refused(self):
        self.create()
        response = self.api("post", "support-answer/versions/", {
            "messages": MESSAGES, "model": "gpt-4o-mini", "parameters": {"max_tokens": 200, "temperature": 0.2}})
        self.assertEqual(response.status_code, 400)
        self.assertIn("identical to version 1", response.json()["messages"][0])

    def test_unknown_version_is_404(self):
        self.create()
        self.assertEqual(self.api("get", "support-answer/versions/9/").status_code, 404)

    def test_version_validation_names_the_field(self):
        self.create()
        response = self.api("post", "support-answer/versions/", {"messages": "hi", "model": "m"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("messages", response.json())


class EnvironmentAndRenderTests(PromptApiTestCase):
    VARS = {"company": "Acme", "question": "Where is my order?", "words": 30}

    def setUp(self):
        super().setUp()
        self.create()
        self.api("post", "support-answer/versions/", {
            "messages": [{"role": "user", "content": "v2: {{question}}"}], "model": "gpt-4o"})

    def test_label_points_at_a_version_and_moves(self):
        response = self.api("post", "support-answer/environments/", {"environment": "production", "version": 1})
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json(), {"environment": "production", "version": 1})
        self.api("post", "support-answer/environments/", {"environment": "staging", "version": 2})
        self.assertEqual(self.api("get", "support-answer/").json()["environments"], {"production": 1, "staging": 2})
        self.api("post", "support-answer/environments/", {"environment": "production", "version": 2})
        self.assertEqual(self.api("get", "support-answer/environments/").json(),
                         [{"environment": "production", "version": 2}, {"environment": "staging", "version": 2}])
        self.assertEqual(self.api("get", "support-answer/versions/2/").json()["environments"],
                         ["production", "staging"])

    def test_label_errors_name_the_field(self):
        response = self.api("post", "support-answer/environments/", {"environment": "production", "version": 7})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json(), {"version": ["prompt 'support-answer' has no version 7"]})
        response = self.api("post", "support-answer/environments/", {"environment": "bad name", "version": 1})
        self.assertIn("environment", response.json())

    def test_render_defaults_to_production_then_latest(self):
        response = self.api("post", "support-answer/render/", {"variables": {"question": "Hi?"}})
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["version"], 2, "no production label: the latest")
        self.assertEqual(response.json()["messages"], [{"role": "user", "content": "v2: Hi?"}])

        self.api("post", "support-answer/environments/", {"environment": "production", "version": 1})
        body = self.api("post", "support-answer/render/", {"variables": self.VARS}).json()
        self.assertEqual(body["version"], 1)
        self.assertEqual(body["model"], "gpt-4o-mini")
        self.assertEqual(body["parameters"], {"temperature": 0.2, "max_tokens": 200})
        self.assertEqual(body["messages"], [
            {"role": "system", "content": "You answer questions about Acme."},
            {"role": "user", "content": "Where is my order? (in 30 words)"},
        ])

    def test_render_by_version_or_environment(self):
        self.api("post", "support-answer/environments/", {"environment": "staging", "version": 1})
        self.assertEqual(self.api("post", "support-answer/render/",
                                  {"variables": self.VARS, "environment": "staging"}).json()["version"], 1)
        self.assertEqual(self.api("post", "support-answer/render/",
                                  {"variables": self.VARS, "version": 2}).json()["version"], 2)

    def test_render_errors_name_the_variable_or_field(self):
        cases = [
            ({"variables": {"company": "A", "words": 3}, "version": 1}, "variables", "missing variable 'question'"),
            ({"variables": {**self.VARS, "words": "many"}, "version": 1}, "variables",
             "variable 'words' must be a number"),
            ({"variables": [], "version": 1}, "variables", "must be a JSON object"),
            ({"variables": self.VARS, "version": 5}, "version", "has no version 5"),
            ({"variables": self.VARS, "environment": "qa"}, "environment", "has no environment 'qa'"),
            ({"variables": self.VARS, "version": 1, "environment": "qa"}, "version", "not both"),
        ]
        for data, field, text in cases:
            with self.subTest(data=data):
                response = self.api("post", "support-answer/render/", data)
                self.assertEqual(response.status_code, 400)
                self.assertIn(text, response.json()[field][0])


class IsolationTests(PromptApiTestCase):
    def setUp(self):
        super().setUp()
        self.create()
        _, charlie_raw = self.make_key(org=self.other_org, scopes=("read", "write"))
        self.charlie_auth = {"HTTP_AUTHORIZATION": f"Bearer {charlie_raw}"}

    def test_another_orgs_prompt_is_404_everywhere(self):
        calls = [
            ("get", "support-answer/", None), ("patch", "support-answer/", {"name": "x"}),
            ("delete", "support-answer/", None), ("get", "support-answer/versions/", None),
            ("post", "support-answer/versions/", {"messages": MESSAGES, "model": "x"}),
            ("get", "support-answer/versions/1/", None),
            ("post", "support-answer/environments/", {"environment": "production", "version": 1}),
            ("post", "support-answer/render/", {"variables": {}}),
        ]
        for method, path, data in calls:
            with self.subTest(method=method, path=path):
                self.assertEqual(self.api(method, path, data, auth=self.charlie_auth).status_code, 404)
        self.assertEqual(self.api("get", auth=self.charlie_auth).json()["count"], 0)
        self.assertEqual(Prompt.objects.get().name, "Support answer")

    def test_outsider_member_session_gets_404(self):
        self.client.force_login(self.charlie)
        self.assertEqual(self.client.get(URL + "support-answer/?org=alice-org").status_code, 404)
        self.assertEqual(self.client.get(URL + "support-answer/").status_code, 404)


class ScopeAndAuthTests(PromptApiTestCase):
    def test_read_scope_reads_but_cannot_change(self):
        self.create()
        _, raw = self.make_key(scopes=("read",))
        auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
        self.assertEqual(self.api("get", "support-answer/", auth=auth).status_code, 200)
        self.assertEqual(self.api("post", "support-answer/render/",
                                  {"variables": {"company": "a", "question": "b", "words": 1}},
                                  auth=auth).status_code, 200)
        for method, path, data in [("post", "", {**CREATE, "id": "other"}), ("patch", "support-answer/", {"name": "x"}),
                                   ("post", "support-answer/versions/", {"messages": MESSAGES, "model": "y"}),
                                   ("post", "support-answer/environments/", {"environment": "p", "version": 1}),
                                   ("delete", "support-answer/", None)]:
            with self.subTest(method=method, path=path):
                response = self.api(method, path, data, auth=auth)
                self.assertEqual(response.status_code, 403)
                self.assertIn("lacks the 'write' scope", response.json()["detail"])

    def test_write_scope_without_read_cannot_read(self):
        _, raw = self.make_key(scopes=("write",))
        response = self.api("get", auth={"HTTP_AUTHORIZATION": f"Bearer {raw}"})
        self.assertEqual(response.status_code, 403)
        self.assertIn("lacks the 'read' scope", response.json()["detail"])

    def test_proxy_only_key_is_refused(self):
        _, raw = self.make_key(scopes=("proxy",))
        self.assertEqual(self.api("get", auth={"HTTP_AUTHORIZATION": f"Bearer {raw}"}).status_code, 403)

    def test_no_or_bad_key_is_401(self):
        self.assertEqual(self.api("get", auth={}).status_code, 401)
        self.assertEqual(self.api("get", auth={"HTTP_AUTHORIZATION": "Bearer sk-helicone-nope"}).status_code, 401)

    def test_revoked_key_is_401(self):
        from django.utils import timezone

        self.key.revoked_at = timezone.now()
        self.key.save(update_fields=["revoked_at"])
        self.assertEqual(self.api("get").status_code, 401)


class BrowsableApiTests(PromptApiTestCase):
    def test_logged_in_member_uses_the_browsable_api(self):
        self.create()
        self.client.force_login(self.bob)
        response = self.client.get(URL, HTTP_ACCEPT="text/html")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "support-answer")
        response = self.client.get(URL + "support-answer/versions/", HTTP_ACCEPT="text/html")
        self.assertContains(response, "<h1>Versions</h1>", status_code=200)
        self.assertContains(response, "Initial version")
        # A member changes; the audit event names the person.
        response = self.client.post(URL + "support-answer/environments/",
                                    {"environment": "production", "version": 1})
        self.assertEqual(response.status_code, 200, response.content)
        event = AuditEvent.objects.get(action="prompt.environment.set")
        self.assertEqual((event.actor_user, event.actor_api_key), (self.bob, None))

    def test_viewer_reads_but_cannot_change(self):
        self.create()
        Membership.objects.filter(pk=self.bob_membership.pk).update(role=Role.VIEWER)
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(URL + "support-answer/").status_code, 200)
        response = self.client.post(URL + "support-answer/environments/", {"environment": "p", "version": 1})
        self.assertEqual(response.status_code, 403)

    def test_member_of_several_orgs_picks_one_with_org_parameter(self):
        self.create()
        Membership.objects.create(org=self.other_org, user=self.bob, role=Role.MEMBER)
        self.client.force_login(self.bob)
        response = self.client.get(URL)
        self.assertEqual(response.status_code, 400)
        self.assertIn("?org=<slug>", response.json()["org"][0])
        self.assertEqual(self.client.get(URL + "?org=alice-org").json()["count"], 1)
        self.assertEqual(self.client.get(URL + "?org=charlie-org").json()["count"], 0)

    def test_anonymous_is_refused(self):
        self.assertIn(self.client.get(URL).status_code, (401, 403))


class AuditTests(PromptApiTestCase):
    def test_every_change_writes_an_audit_event(self):
        self.create()
        self.api("patch", "support-answer/", {"name": "Renamed"})
        self.api("post", "support-answer/versions/", {"messages": MESSAGES, "model": "gpt-4o", "message": "bigger"})
        self.api("post", "support-answer/environments/", {"environment": "production", "version": 2})
        self.api("post", "support-answer/render/", {"variables": {"company": "a", "question": "b", "words": 1}})
        self.api("delete", "support-answer/")
        events = list(AuditEvent.objects.filter(org=self.org).order_by("id"))
        self.assertEqual([e.action for e in events], [
            "prompt.create", "prompt.update", "prompt.version.create", "prompt.environment.set", "prompt.delete",
        ], "render is a read: no event")
        for event in events:
            self.assertEqual(event.actor_api_key, self.key)
            self.assertEqual(event.actor_label, f"api key {self.key.masked}")
            self.assertIsNone(event.actor_user)
        self.assertEqual(events[0].changes["prompt"], "support-answer")
        self.assertEqual(events[1].changes["name"], ["Support answer", "Renamed"])
        self.assertEqual(events[2].changes["version"], 2)
        self.assertEqual(events[3].changes, {"prompt": "support-answer", "environment": "production",
                                             "version": [None, 2]})
        self.assertEqual(events[4].changes, {"prompt": "support-answer", "versions": 2})

    def test_refused_changes_write_nothing(self):
        self.create()
        before = AuditEvent.objects.count()
        self.api("post", "", CREATE)
        self.api("post", "support-answer/environments/", {"environment": "production", "version": 9})
        self.api("patch", "support-answer/", {})
        self.assertEqual(AuditEvent.objects.count(), before)
