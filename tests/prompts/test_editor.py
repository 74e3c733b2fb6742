"""The prompt editor on the create and new-version pages (issue #22 item 6), through the test client,
i.e. as a browser with JavaScript off sees it: one row per message, the rows checked on the server
(unknown role, empty content, unbalanced `{{`, a bad variable name: a 400 naming the message,
nothing saved), the editor's buttons working by posting, the JSON textarea still accepted."""

import json

from django.test import override_settings

from orgs.models import AuditEvent
from prompts import actions
from prompts.models import Prompt, PromptVersion
from tests.base import BaseTestCase, make_personas

BASE = "/o/alice-org/prompts/"
NEW = BASE + "helper/versions/new/"
V1 = [{"role": "system", "content": "Answer in {{language}}."}, {"role": "user", "content": "{{question}}"}]


def rows(*messages, **fields) -> dict:
    """A post of the editor's rows (repeated fields, in order) with the other fields."""
    return {"editor": "rows", "message_role": [role for role, _ in messages],
            "message_content": [content for _, content in messages],
            "model": "gpt-4o-mini", "parameters": "{}", **fields}


class PromptEditorTests(BaseTestCase):
    @classmethod
    def setUpTestData(cls):
        with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
            make_personas(cls)
        cls.prompt = actions.create_prompt(cls.org, actor=actions.Actor(user=cls.alice), slug="helper",
                                           name="Helper", messages=V1, model="gpt-4o-mini")

    def setUp(self):
        self.client.force_login(self.bob)

    def versions(self) -> int:
        return PromptVersion.objects.filter(prompt=self.prompt).count()

    def test_new_version_page_shows_one_row_per_message_with_its_variables(self):
        response = self.client.get(NEW)
        self.assertContains(response, 'id="prompt-editor"')
        self.assertEqual([row["role"] for row in response.context["form"].editor_rows()], ["system", "user"])
        self.assertContains(response, '<option value="system" selected>system</option>', html=False)
        self.assertContains(response, "Answer in {{language}}.</textarea>", html=False)
        self.assertContains(response, '<code class="var">{{language}}</code>', html=False)
        self.assertContains(response, '<code class="var">{{question}}</code>', html=False)
        self.assertNotContains(response, 'name="messages"')  # the rows replace the JSON textarea
        self.assertContains(response, "prompts/editor.js")

    def test_rows_are_saved_as_a_new_version_in_their_order(self):
        response = self.client.post(NEW, rows(("system", "Answer in {{language}}.\r\nBe brief."),
                                              ("user", "{{ hc:question:string }}"), message="two rows"))
        self.assertRedirects(response, BASE + "helper/")
        v2 = PromptVersion.objects.get(prompt=self.prompt, version=2)
        self.assertEqual(v2.messages, [{"role": "system", "content": "Answer in {{language}}.\nBe brief."},
                                       {"role": "user", "content": "{{ hc:question:string }}"}])
        self.assertEqual(v2.variables, [{"name": "language", "type": "any"}, {"name": "question", "type": "string"}])
        event = AuditEvent.objects.get(action="prompt.version.create", changes__version=2)
        self.assertEqual(event.actor_user, self.bob)
        # The version diff is still there.
        diff = self.client.get(BASE + "helper/").context["diff"]
        self.assertIn(("add", "+Be brief."), diff)

    def test_each_bad_row_is_named_and_nothing_is_saved(self):
        cases = [
            (("robot", "hi"), "Message 2: unknown role &#x27;robot&#x27;"),
            (("user", "   "), "Message 2 (user): content is empty"),
            (("user", "Tell me about {{topic"), "Message 2 (user): &#x27;{{&#x27; in “{{topic” is never closed"),
            (("user", "{{a}} and {{b {{c}}"), "Message 2 (user): &#x27;{{&#x27; in “{{b {{c}}” is never closed"),
            (("user", "{{2nd topic}}"), "Message 2 (user): &#x27;{{2nd topic}}&#x27; is not a valid variable"),
            (("user", "{{}}"), "Message 2 (user): &#x27;{{}}&#x27; is empty"),
            (("user", "{{hc:n:date}}"), "Message 2 (user): unknown type &#x27;date&#x27;"),
        ]
        for row, error in cases:
            with self.subTest(row=row):
                response = self.client.post(NEW, rows(("system", "Be kind."), row))
                self.assertEqual(response.status_code, 400)
                self.assertContains(response, error, status_code=400)  # beside the row and in the summary
                self.assertEqual(response.content.decode().count(error), 2)
                self.assertEqual(response.context["form"].row_errors.keys(), {2})
                self.assertContains(response, "Nothing was saved", status_code=400)
                # What was typed comes back, to be fixed.
                self.assertContains(response, f"{row[1]}</textarea>", status_code=400, html=False)
        self.assertEqual(self.versions(), 1)
        self.assertFalse(AuditEvent.objects.filter(action="prompt.version.create", changes__version=2).exists())

    def test_literal_braces_that_are_not_placeholders_are_fine(self):
        response = self.client.post(NEW, rows(("user", 'Reply as JSON: {"a": {"b": 1}} for {{question}}')))
        self.assertRedirects(response, BASE + "helper/")

    def test_a_variable_with_two_types_across_rows_is_refused(self):
        response = self.client.post(NEW, rows(("system", "{{hc:n:number}}"), ("user", "{{hc:n:boolean}}")))
        self.assertContains(response, "declared both as number and as boolean", status_code=400)
        self.assertEqual(self.versions(), 1)

    def test_no_rows_at_all_is_refused(self):
        response = self.client.post(NEW, {"editor": "rows", "model": "m", "parameters": "{}"})
        self.assertContains(response, "add at least one message", status_code=400)

    def test_editor_buttons_work_without_javascript_and_save_nothing(self):
        post = rows(("system", "A"), ("user", "B {{x}}"), ("assistant", "C"), message="kept")
        response = self.client.post(NEW, {**post, "editor_action": "up-3"})
        self.assertEqual(response.status_code, 200)
        form = response.context["form"]
        self.assertEqual([(r["role"], r["content"]) for r in form.editor_rows()],
                         [("system", "A"), ("assistant", "C"), ("user", "B {{x}}")])
        self.assertContains(response, 'value="kept"')  # the other fields are kept
        self.assertNotContains(response, "field-error")
        response = self.client.post(NEW, {**post, "editor_action": "remove-1"})
        self.assertEqual([r["content"] for r in response.context["form"].editor_rows()], ["B {{x}}", "C"])
        response = self.client.post(NEW, {**post, "editor_action": "down-1"})
        self.assertEqual([r["content"] for r in response.context["form"].editor_rows()], ["B {{x}}", "A", "C"])
        response = self.client.post(NEW, {**post, "editor_action": "add"})
        self.assertEqual([(r["role"], r["content"]) for r in response.context["form"].editor_rows()][-1],
                         ("user", ""))
        self.assertContains(response, 'id="message-content-4"')
        self.assertEqual(self.versions(), 1)

    def test_the_json_textarea_is_still_accepted_and_checked_the_same_way(self):
        response = self.client.post(NEW, {"messages": json.dumps([{"role": "user", "content": "Hi {{name"}]),
                                          "model": "m", "parameters": "{}"})
        self.assertContains(response, "Messages: Message 1 (user): &#x27;{{&#x27; in “{{name” is never closed",
                            status_code=400)
        response = self.client.post(NEW, {"messages": json.dumps([{"role": "user", "content": "Hi {{name}}"}]),
                                          "model": "m", "parameters": "{}"})
        self.assertRedirects(response, BASE + "helper/")
        self.assertEqual(self.versions(), 2)

    def test_messages_the_rows_cannot_hold_open_in_the_json_editor(self):
        parts = [{"role": "user", "content": [{"type": "text", "text": "{{question}}"}]}]
        actions.create_version(self.org, self.prompt, actor=actions.Actor(user=self.alice), messages=parts,
                               model="gpt-4o-mini")
        response = self.client.get(NEW)
        self.assertEqual(response.context["form"].editor, "json")
        self.assertContains(response, 'name="messages"')
        self.assertContains(response, "shown as JSON")
        response = self.client.get(BASE + "?editor=json")  # on request, too
        self.assertContains(response, 'name="messages"')
        self.assertNotContains(response, 'name="message_role"')

    def test_a_prompt_is_created_from_rows(self):
        self.assertContains(self.client.get(BASE), 'name="message_role"')
        response = self.client.post(BASE, rows(("system", "You translate into {{language}}."), ("user", "{{text}}"),
                                               id="translator", name="Translator"))
        self.assertRedirects(response, BASE + "translator/")
        prompt = Prompt.objects.get(org=self.org, slug="translator")
        self.assertEqual([m["role"] for m in prompt.versions.get().messages], ["system", "user"])
        self.assertTrue(AuditEvent.objects.filter(action="prompt.create", changes__prompt="translator").exists())
        response = self.client.post(BASE, rows(("user", "{{text"), id="broken", name="Broken"))
        self.assertContains(response, "Message 1 (user): &#x27;{{&#x27; in “{{text” is never closed",
                            status_code=400)
        self.assertFalse(Prompt.objects.filter(org=self.org, slug="broken").exists())

    def test_outsider_and_viewer_cannot_use_the_editor(self):
        self.client.force_login(self.charlie)
        post = rows(("user", "{{x}}"))
        self.assertEqual(self.client.post(NEW, post).status_code, 404)
        self.assertEqual(self.client.post(NEW, {**post, "editor_action": "add"}).status_code, 404)
        self.assertEqual(self.client.post(BASE, {**post, "id": "x", "name": "x"}).status_code, 404)
        self.bob_membership.role = "viewer"
        self.bob_membership.save(update_fields=["role"])
        self.client.force_login(self.bob)
        self.assertEqual(self.client.post(NEW, {**post, "editor_action": "add"}).status_code, 403)
        self.assertNotContains(self.client.get(BASE), 'name="message_role"')
        self.assertEqual(self.versions(), 1)
