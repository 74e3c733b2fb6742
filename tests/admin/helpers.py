"""An operator (superuser) signed in to the admin with a real TOTP token, and a view-only staff user."""

from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import Client

from analytics.admin import month_start, month_usage_key
from orgs.models import User
from tests.base import PASSWORD
from tests.orgs.helpers import USER_AGENT, OrgsTestCase


class AdminTestCase(OrgsTestCase):
    def setUp(self):
        super().setUp()
        # The org list caches each org's monthly usage for a minute; test ids repeat.
        cache.delete_many([month_usage_key(org.pk, month_start()) for org in (self.org, self.other_org)])
        self.operator = User.objects.create_superuser("ops@example.org", PASSWORD)
        self.login_with_totp(self.operator, self.give_totp(self.operator))

    def view_only_client(self) -> Client:
        """A staff user with every view permission and nothing else, signed in with a device."""
        viewer = User.objects.create_user("auditor@example.org", PASSWORD, is_staff=True)
        viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
        client = Client(headers={"user-agent": USER_AGENT})
        self.login_with_totp(viewer, self.give_totp(viewer), client=client)
        return client
