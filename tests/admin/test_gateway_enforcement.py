"""Operators' decisions reach a real gateway (daphne): suspension within 5 s, the monthly request limit."""

import time

import httpx
import pytest
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from analytics.models import RequestLog
from orgs.models import AuditEvent, Organization, User
from tests.analytics.helpers import store
from tests.base import PASSWORD, redis_url
from tests.gateway.conftest import wait_for_log
from tests.orgs.helpers import token_for

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ORGS = "/admin/orgs/organization/"


def post(gateway, raw_key: str) -> httpx.Response:
    return httpx.post(gateway.url + "/oai/v1/chat/completions", headers={"Helicone-Auth": f"Bearer {raw_key}"},
                      json=BODY, timeout=30)


def operator() -> Client:
    """A superuser signed in with password and a TOTP code, as an operator would."""
    user = User.objects.create_superuser("ops@example.org", PASSWORD)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    client = Client()
    assert client.post("/login/", {"username": user.email, "password": PASSWORD}).status_code == 302
    client.post("/login/2fa/", {"token": token_for(device)})
    assert client.get("/admin/").status_code == 200
    return client


def wait_for_status(gateway, raw_key: str, status: int, within: float = 5.0) -> httpx.Response:
    started = time.monotonic()
    while (response := post(gateway, raw_key)).status_code != status:
        assert time.monotonic() - started < within, f"still {response.status_code} after {within} s: {response.text}"
        time.sleep(0.2)
    return response


def test_suspending_in_the_admin_refuses_the_orgs_keys_within_5_seconds(gateway, tenant, mock_provider):
    assert post(gateway, tenant.raw_key).status_code == 200
    admin = operator()
    response = admin.post(ORGS, {"action": "suspend", "_selected_action": [tenant.org.pk], "apply": "1",
                                 "reason": "Unpaid invoice 2026-11"})
    assert response.status_code == 302

    refused = wait_for_status(gateway, tenant.raw_key, 403)
    error = refused.json()["error"]
    assert error["type"] == "helicone_org_suspended"
    assert error["message"].startswith("Organization acme is suspended: Unpaid invoice 2026-11.")
    mock_provider.reset()
    assert post(gateway, tenant.raw_key).status_code == 403
    assert mock_provider.requests() == []  # nothing forwarded
    assert post(gateway, tenant.other_raw_key).status_code == 200  # other orgs are untouched

    assert admin.post(ORGS, {"action": "reactivate", "_selected_action": [tenant.org.pk]}).status_code == 302
    wait_for_status(gateway, tenant.raw_key, 200)
    assert list(AuditEvent.objects.filter(org=tenant.org, action__startswith="org.").values_list("action", flat=True)
                .order_by("id")) == ["org.suspend", "org.reactivate"]


def test_a_key_used_again_after_a_pause_is_refused_at_once(gateway, tenant):
    # The cached answer of a key idle for a while is not served once it is 5 s old.
    assert post(gateway, tenant.raw_key).status_code == 200
    Organization.objects.filter(pk=tenant.org.pk).update(suspended_at=timezone.now(), suspended_reason="Abuse")
    time.sleep(5.2)
    assert post(gateway, tenant.raw_key).status_code == 403


def _forget_month_counter(org_id: int) -> None:
    # Test databases restart their ids; a counter left in Redis by an earlier run must not count here.
    import redis

    url = redis_url()
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(f"hc:month:{{{org_id}}}:*"):
            client.delete(key)
    finally:
        client.close()


def test_the_monthly_limit_counts_from_the_months_logs_and_answers_429(gateway, tenant, mock_provider):
    if gateway.env.get("REDIS_URL"):
        _forget_month_counter(tenant.org.pk)
    store([RequestLog(org=tenant.org, provider="openai", status=200) for _ in range(2)])
    Organization.objects.filter(pk=tenant.org.pk).update(monthly_request_limit=4)
    mock_provider.reset()
    served = [post(gateway, tenant.raw_key) for _ in range(2)]
    assert [r.status_code for r in served] == [200, 200]

    refused = post(gateway, tenant.raw_key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "helicone_monthly_limit_exceeded"
    assert "allows 4 requests per calendar month" in error["message"]
    assert int(refused.headers["retry-after"]) > 0
    assert len(mock_provider.requests()) == 2
    assert post(gateway, tenant.other_raw_key).status_code == 200  # the limit is the org's own

    for response in served:
        wait_for_log(response.headers["helicone-id"])
    assert RequestLog.objects.filter(org=tenant.org).count() == 4  # refusals are neither forwarded nor logged

    # A higher limit set by the operator applies within the key cache's lifetime.
    Organization.objects.filter(pk=tenant.org.pk).update(monthly_request_limit=5)
    wait_for_status(gateway, tenant.raw_key, 200)
    assert post(gateway, tenant.raw_key).status_code == 429
