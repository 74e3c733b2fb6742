"""Org-wide rate limits: set by owners and admins on the settings pages, validated, audited."""

import pytest

from gateway.auth import _lookup
from orgs.models import AuditEvent, Membership, Organization, Role, User, hash_api_key
from tests.base import PASSWORD, BaseTestCase

URL = "/o/alice-org/settings/rate-limits/"


class OrgRateLimitTests(BaseTestCase):
    def test_owner_sets_a_policy_normalised_and_audited(self):
        self.client.force_login(self.alice)
        self.assertContains(self.client.get(URL), "Rate limit policy")
        response = self.client.post(URL, {"rate_limit_policy": " 1000;w=3600 ,100;w=60;u=user "})
        self.assertRedirects(response, URL, fetch_redirect_response=False)
        self.org.refresh_from_db()
        self.assertEqual(self.org.rate_limit_policy, "1000;w=3600;u=request, 100;w=60;u=request;s=user")
        event = AuditEvent.objects.get(org=self.org, action="org.rate_limit_policy")
        self.assertEqual(event.actor_user, self.alice)
        self.assertEqual(event.changes["rate_limit_policy"], ["", self.org.rate_limit_policy])
        self.assertContains(self.client.get("/o/alice-org/settings/"), "1000;w=3600;u=request")

    def test_admin_may_set_it_member_may_not_outsider_gets_404(self):
        admin = User.objects.create_user("admin@example.org", PASSWORD)
        Membership.objects.create(org=self.org, user=admin, role=Role.ADMIN)
        self.client.force_login(admin)
        self.assertEqual(self.client.post(URL, {"rate_limit_policy": "5;w=60"}).status_code, 302)
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(URL).status_code, 403)
        self.assertEqual(self.client.post(URL, {"rate_limit_policy": ""}).status_code, 403)
        self.client.force_login(self.charlie)
        self.assertEqual(self.client.get(URL).status_code, 404)
        self.org.refresh_from_db()
        self.assertEqual(self.org.rate_limit_policy, "5;w=60;u=request")

    def test_clearing_removes_the_limit(self):
        self.client.force_login(self.alice)
        self.client.post(URL, {"rate_limit_policy": "5;w=60;u=token"})
        self.client.post(URL, {"rate_limit_policy": ""})
        self.org.refresh_from_db()
        self.assertEqual(self.org.rate_limit_policy, "")
        self.assertEqual(AuditEvent.objects.filter(action="org.rate_limit_policy").count(), 2)

    def test_invalid_policy_is_a_form_error_naming_the_field(self):
        self.client.force_login(self.alice)
        response = self.client.post(URL, {"rate_limit_policy": "10;w=60;u=bytes"})
        self.assertContains(response, "Rate limit policy: ", status_code=400)
        self.assertContains(response, "u= must be request, token or cents", status_code=400)
        self.org.refresh_from_db()
        self.assertEqual(self.org.rate_limit_policy, "")
        self.assertFalse(AuditEvent.objects.filter(action="org.rate_limit_policy").exists())


@pytest.mark.django_db(transaction=True)
def test_the_gateway_key_lookup_carries_the_org_policy(tenant):
    # The lookup closes stale connections (no request signals on the gateway path): not inside a TestCase.
    Organization.objects.filter(pk=tenant.org.pk).update(rate_limit_policy="5;w=60;u=token, 9;w=10")
    info = _lookup(hash_api_key(tenant.raw_key))
    assert [p.text for p in info.rate_limits] == ["5;w=60;u=token", "9;w=10;u=request"]
    Organization.objects.filter(pk=tenant.org.pk).update(rate_limit_policy="")
    assert _lookup(hash_api_key(tenant.raw_key)).rate_limits == ()
