from io import StringIO

from django.core import mail
from django.core.management import CommandError, call_command

from orgs.models import ApiKey, AuditEvent, Membership, Organization, Role, User
from tests.orgs.helpers import FAST_HASHERS, OrgsTestCase


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


class CreateOrgCommandTests(OrgsTestCase):
    def test_creates_org_and_new_owner_with_password(self):
        with self.settings(PASSWORD_HASHERS=FAST_HASHERS):
            output = run("create_org", "acme", "--name", "Acme Inc", "--owner", "Boss@Acme.test",
                         "--password", "a long owner passphrase")
        org = Organization.objects.get(slug="acme")
        self.assertEqual(org.name, "Acme Inc")
        owner = User.objects.get(email="boss@acme.test")
        self.assertTrue(owner.check_password("a long owner passphrase"))
        self.assertEqual(Membership.objects.get(org=org, user=owner).role, Role.OWNER)
        self.assertIn("acme", output)
        event = AuditEvent.objects.get(action="org.create", org=org)
        self.assertEqual(event.changes["via"], "manage.py create_org")
        self.assertNotIn("a long owner passphrase", repr(list(AuditEvent.objects.values_list("changes", flat=True))))

    def test_uses_an_existing_user(self):
        run("create_org", "acme", "--name", "Acme", "--owner", "bob@example.org")
        self.assertEqual(Membership.objects.get(org__slug="acme", user=self.bob).role, Role.OWNER)
        self.assertEqual(User.objects.filter(email="bob@example.org").count(), 1)

    def test_new_owner_without_password_sets_one_by_password_reset(self):
        output = run("create_org", "acme", "--name", "Acme", "--owner", "new@acme.test")
        self.assertIn("password reset", output)
        self.client.post("/password-reset/", {"email": "new@acme.test"})
        self.assertEqual(len(mail.outbox), 1)

    def test_existing_slug_is_an_error_naming_it_and_creates_nothing(self):
        users = User.objects.count()
        with self.assertRaisesMessage(CommandError, "alice-org"):
            run("create_org", "alice-org", "--name", "Dup", "--owner", "someone@new.test")
        self.assertEqual(User.objects.count(), users)
        self.assertEqual(Organization.objects.get(slug="alice-org").name, "Alice Org")

    def test_bad_arguments_are_errors(self):
        with self.assertRaisesMessage(CommandError, "not valid"):
            run("create_org", "bad slug!", "--name", "X", "--owner", "a@b.test")
        with self.assertRaisesMessage(CommandError, "--owner"):
            run("create_org", "fine", "--name", "X", "--owner", "not-an-email")
        self.assertFalse(Organization.objects.filter(slug="fine").exists())


class CreateApiKeyCommandTests(OrgsTestCase):
    def test_last_line_is_the_key_with_all_scopes_by_default(self):
        output = run("create_api_key", "alice-org")
        last = output.rstrip("\n").splitlines()[-1]
        key = ApiKey.find_active(last)
        self.assertIsNotNone(key)
        self.assertEqual(key.org, self.org)
        self.assertEqual(key.scopes, ["proxy", "read", "write"])
        event = AuditEvent.objects.get(action="apikey.create", org=self.org)
        self.assertEqual(event.changes["via"], "manage.py create_api_key")
        self.assertNotIn(last, repr(event.changes))

    def test_name_and_scopes(self):
        output = run("create_api_key", "alice-org", "--name", "ci", "--scopes", "read, proxy")
        key = ApiKey.find_active(output.splitlines()[-1])
        self.assertEqual((key.name, key.scopes), ("ci", ["proxy", "read"]))

    def test_unknown_scope_is_an_error_naming_it(self):
        with self.assertRaisesMessage(CommandError, "'admin'"):
            run("create_api_key", "alice-org", "--scopes", "proxy,admin")
        self.assertFalse(ApiKey.objects.exists())

    def test_unknown_org_is_an_error_naming_it(self):
        with self.assertRaisesMessage(CommandError, "'nope'"):
            run("create_api_key", "nope")
