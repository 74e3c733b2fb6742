import re

from django.apps import apps
from django.core import serializers

from orgs.models import ApiKey, AuditEvent
from tests.orgs.helpers import OrgsTestCase

KEYS = "/o/alice-org/settings/keys/"


class ApiKeyPageTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def create(self, name="backend", scopes=("proxy", "read")):
        response = self.client.post(KEYS, {"name": name, "scopes": list(scopes)})
        self.assertEqual(response.status_code, 201)
        match = re.search(r'<pre class="secret" id="new-key">(sk-helicone-[^<]+)</pre>', response.content.decode())
        self.assertIsNotNone(match)
        return response, match.group(1)

    def test_key_is_shown_once_and_then_only_masked(self):
        response, raw = self.create()
        self.assertEqual(response["Cache-Control"], "no-store")
        key = ApiKey.objects.get(org=self.org)
        self.assertEqual(ApiKey.find_active(raw), key)
        self.assertEqual((key.name, key.scopes, key.created_by), ("backend", ["proxy", "read"], self.alice))
        listing = self.client.get(KEYS)
        self.assertNotContains(listing, raw)
        self.assertContains(listing, key.masked)
        self.assertContains(listing, "backend")
        self.assertContains(listing, "alice@example.org")
        self.assertContains(listing, "never")
        event = self.assert_audited("apikey.create", org=self.org, actor_user=self.alice)
        self.assertEqual(event.changes, {"name": "backend", "scopes": ["proxy", "read"], "key": key.masked})

    def test_plaintext_is_nowhere_in_the_database(self):
        _, raw = self.create()
        self.client.post(f"{KEYS}{ApiKey.objects.get().pk}/revoke/")
        secret_part = raw[len("sk-helicone-"):]
        for model in [ApiKey, AuditEvent]:
            self.assertTrue(model.objects.exists())
            for row in model.objects.all():
                for field in model._meta.concrete_fields:
                    self.assertNotIn(secret_part, str(field.value_from_object(row)), (model, field.name))
        # And in no other table either (sessions included).
        for model in apps.get_models():
            dump = serializers.serialize("json", model.objects.all())
            self.assertNotIn(secret_part, dump, model)

    def test_scopes_are_required_and_validated(self):
        response = self.client.post(KEYS, {"name": "x"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("scopes", response.context["form"].errors)
        self.assertContains(response, "Scopes: Choose at least one scope.", status_code=400)
        response = self.client.post(KEYS, {"name": "x", "scopes": ["admin"]})
        self.assertIn("scopes", response.context["form"].errors)
        response = self.client.post(KEYS, {"name": "  ", "scopes": ["proxy"]})
        self.assertIn("name", response.context["form"].errors)
        self.assertFalse(ApiKey.objects.exists())

    def test_revoke(self):
        _, raw = self.create()
        key = ApiKey.objects.get()
        response = self.client.post(f"{KEYS}{key.pk}/revoke/")
        self.assertRedirects(response, KEYS, fetch_redirect_response=False)
        key.refresh_from_db()
        self.assertIsNotNone(key.revoked_at)
        self.assertIsNone(ApiKey.find_active(raw))
        self.assertContains(self.client.get(KEYS), "revoked")
        event = self.assert_audited("apikey.revoke", org=self.org, actor_user=self.alice)
        self.assertEqual(event.changes, {"name": "backend", "key": key.masked})
        # Revoking twice changes nothing and writes nothing.
        self.client.post(f"{KEYS}{key.pk}/revoke/")
        self.assertEqual(AuditEvent.objects.filter(action="apikey.revoke").count(), 1)

    def test_revoke_is_post_only(self):
        key, _ = self.make_key()
        self.assertEqual(self.client.get(f"{KEYS}{key.pk}/revoke/").status_code, 405)

    def test_another_orgs_key_cannot_be_revoked(self):
        key, raw = self.make_key(org=self.other_org)
        self.assertEqual(self.client.post(f"{KEYS}{key.pk}/revoke/").status_code, 404)
        self.assertIsNotNone(ApiKey.find_active(raw))
