"""What "unpriced" counts (issue #15): a call with token usage whose model has no price, and nothing else.

models.list and Anthropic's count_tokens report no usage: there is nothing to price, so they
are not unpriced. Embeddings are priced by their input tokens.
"""

import uuid

import anthropic
import httpx
import openai
import pytest
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from analytics.pricing import cost_usd
from orgs.models import User
from tests.orgs.helpers import token_for

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)


def test_only_calls_with_usage_and_no_price_are_unpriced(gateway, tenant):
    auth = {"Helicone-Auth": f"Bearer {tenant.raw_key}"}
    marker = uuid.uuid4().hex[:8]
    oai = openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key="sk-provider", default_headers=auth,
                        max_retries=0)
    claude = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key="sk-ant", default_headers=auth,
                                 max_retries=0)

    models = oai.models.with_raw_response.list()
    counted = claude.messages.with_raw_response.count_tokens(
        model=f"mock-counter-{marker}", messages=[{"role": "user", "content": "how many tokens"}])
    assert counted.parse().input_tokens == 3
    unknown = oai.chat.completions.with_raw_response.create(
        model=f"mock-unknown-{marker}", messages=[{"role": "user", "content": "hello there"}])
    embedded = oai.embeddings.with_raw_response.create(model="text-embedding-3-small", input="a b c d")

    logs = {name: wait_for_log(raw.headers["helicone-id"])
            for name, raw in (("models", models), ("count", counted), ("unknown", unknown), ("embed", embedded))}
    assert logs["models"].prompt_tokens is None and logs["count"].prompt_tokens is None
    assert logs["unknown"].cost_usd is None and logs["unknown"].prompt_tokens == 2
    assert logs["embed"].cost_usd == cost_usd("openai", "text-embedding-3-small", 4, 0) > 0

    summary = httpx.get(gateway.url + "/api/v1/metrics/summary",
                        headers={"Authorization": f"Bearer {tenant.raw_key}"}, timeout=10)
    assert summary.status_code == 200, summary.text
    assert summary.json()["count"] == 4 and summary.json()["unpriced"] == 1

    operator = User.objects.create_superuser("ops@example.org", "pw-123456789")
    device = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    admin = Client()
    assert admin.post("/login/", {"username": operator.email, "password": "pw-123456789"}).status_code == 302
    admin.post("/login/2fa/", {"token": token_for(device)})
    page = admin.get("/admin/analytics/modelprice/unpriced/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"mock-unknown-{marker}" in html and f"mock-counter-{marker}" not in html
