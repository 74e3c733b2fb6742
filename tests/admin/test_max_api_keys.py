"""The plan's max_api_keys: refused with a clear message on the keys page and by create_api_key."""

from io import StringIO

from django.core.management import CommandError, call_command

from orgs.models import ApiKey, AuditEvent
from tests.orgs.helpers import OrgsTestCase

KEYS = "/o/alice-org/settings/keys/"


class MaxApiKeysTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.org.max_api_keys = 2
        self.org.save(update_fields=["max_api_keys"])
        self.client.force_login(self.alice)

    def create(self, name: str):
        return self.client.post(KEYS, {"name": name, "scopes": ["proxy"]})

    def test_the_keys_page_refuses_the_key_past_the_limit(self):
        self.assertContains(self.client.get(KEYS), "allows 2 active keys")
        self.assertEqual(self.create("one").status_code, 201)
        self.assertEqual(self.create("two").status_code, 201)
        response = self.create("three")
        self.assertContains(response, "Alice Org has 2 active API keys, the most its plan allows (2)",
                            status_code=400)
        self.assertNotContains(response, 'id="new-key"', status_code=400)
        self.assertFalse(ApiKey.objects.filter(name="three").exists())
        self.assertEqual(AuditEvent.objects.filter(action="apikey.create").count(), 2)

    def test_revoked_keys_do_not_count(self):
        self.create("one")
        self.create("two")
        ApiKey.objects.filter(name="one").update(revoked_at="2026-01-01T00:00:00Z")
        self.assertEqual(self.create("three").status_code, 201)

    def test_unlimited_when_blank(self):
        self.org.max_api_keys = None
        self.org.save(update_fields=["max_api_keys"])
        for n in range(3):
            self.assertEqual(self.create(f"k{n}").status_code, 201)

    def test_the_command_refuses_too(self):
        self.create("one")
        self.create("two")
        with self.assertRaisesMessage(CommandError, "the most its plan allows (2)"):
            call_command("create_api_key", "alice-org", stdout=StringIO())
        self.assertEqual(ApiKey.objects.filter(org=self.org).count(), 2)
        self.assertEqual(ApiKey.objects.filter(org=self.other_org).count(), 0)
        out = StringIO()
        call_command("create_api_key", "charlie-org", stdout=out)  # another org, its own (blank) limit
        self.assertTrue(out.getvalue().strip().splitlines()[-1].startswith("sk-helicone-"))
