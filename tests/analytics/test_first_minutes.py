"""What a new user meets first (issue #22, items 8 and 9): the empty dashboard's quick start, the
alert badge, sub-cent costs, the slug's help text, the erase button and the "unpriced" label."""

import html as htmllib
import re
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from analytics import charts
from analytics.models import AlertEvent, AlertRule
from orgs.models import ApiKey
from tests.base import BaseTestCase

from .helpers import create_log


def badge(html: str) -> str:
    return re.search(r'<span id="alerts-badge"[^>]*>[^<]*</span>', html).group(0)


class QuickStartTests(BaseTestCase):
    def test_an_org_without_logs_shows_a_snippet_for_this_server_without_a_secret(self):
        _, raw_key = ApiKey.generate(self.org, "app", ["proxy"], created_by=self.alice)
        self.client.force_login(self.alice)
        with self.settings(ALLOWED_HOSTS=["gateway.example.org"]):
            response = self.client.get("/o/alice-org/", HTTP_HOST="gateway.example.org:8443")
        html = response.content.decode()
        assert 'id="quickstart"' in html and 'data-copy="quickstart-openai"' in html
        snippet = htmllib.unescape(re.search(r'<section class="card highlight" id="quickstart".*?</section>',
                                             html, re.S).group(0))
        # The base URL the browser reached, for both SDKs, with the header and a placeholder for the key.
        assert 'base_url="http://gateway.example.org:8443/oai/v1"' in snippet
        assert 'base_url="http://gateway.example.org:8443/anthropic"' in snippet
        assert snippet.count('default_headers={"Helicone-Auth": "Bearer <your gateway API key>"}') == 2
        assert raw_key not in html and "sk-helicone-" not in html

    def test_behind_a_tls_proxy_the_snippet_says_https(self):
        self.client.force_login(self.bob)
        response = self.client.get("/o/alice-org/", secure=True)
        assert 'base_url="https://testserver/oai/v1"' in htmllib.unescape(response.content.decode())

    def test_the_snippet_goes_once_the_org_has_logged_a_request(self):
        create_log(org=self.org, provider="openai", model="gpt-4o-mini", status=200,
                   created_at=timezone.now() - timedelta(days=3))  # outside the dashboard's 24 hours
        self.client.force_login(self.alice)
        html = self.client.get("/o/alice-org/").content.decode()
        assert 'id="quickstart"' not in html and "your gateway API key" not in html
        # An outsider's empty org still shows it: the check is per org.
        self.client.force_login(self.charlie)
        assert 'id="quickstart"' in self.client.get("/o/charlie-org/").content.decode()

    def test_the_navigation_links_the_api_docs_and_pages_link_the_favicon(self):
        self.client.force_login(self.bob)
        html = self.client.get("/o/alice-org/requests/").content.decode()
        assert re.search(r'<nav class="orgnav".*?<a href="/api/v1/docs"[^>]*>API docs</a>', html, re.S)
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
        assert self.client.get("/api/v1/docs").status_code == 200
        favicon = self.client.get("/favicon.ico")
        assert favicon.status_code == 301 and favicon["Location"] == "/static/favicon.svg"


class AlertBadgeTests(BaseTestCase):
    def test_the_badge_shows_only_while_an_alert_is_open(self):
        self.client.force_login(self.bob)
        closed = badge(self.client.get("/o/alice-org/requests/").content.decode())
        assert " hidden" in closed and "open" not in closed.split(">", 1)[1]

        rule = AlertRule.objects.create(org=self.org, name="Errors", metric="error_rate", threshold=10)
        event = AlertEvent.objects.create(org=self.org, rule=rule, value=42.5, threshold=10, request_count=30)
        firing = badge(self.client.get("/o/alice-org/requests/").content.decode())
        assert " hidden" not in firing and ">1 open</span>" in firing
        # Another org's alert never counts here.
        self.client.force_login(self.charlie)
        assert " hidden" in badge(self.client.get("/o/charlie-org/").content.decode())

        event.resolved_at = timezone.now()
        event.save(update_fields=["resolved_at"])
        self.client.force_login(self.bob)
        assert " hidden" in badge(self.client.get("/o/alice-org/").content.decode())


class CostFormatTests(BaseTestCase):
    def test_sub_cent_costs_keep_their_significant_digits(self):
        assert charts.usd(0.0042) == "$0.0042"
        assert charts.usd(0.000123) == "$0.00012"
        assert charts.usd(0.005) == "$0.005"
        assert charts.usd(0.01) == "$0.01"
        assert charts.usd(1234.5) == "$1,234.50"

    def test_the_cost_tiles_show_a_sub_cent_total(self):
        now = timezone.now()
        for cost in ("0.0021", "0.0021"):
            create_log(org=self.org, provider="openai", model="gpt-4o-mini", status=200, prompt_tokens=10,
                       completion_tokens=5, cost_usd=Decimal(cost), session_id="s1", user_id="ana",
                       created_at=now - timedelta(minutes=5))
        self.client.force_login(self.alice)
        dashboard = self.client.get("/o/alice-org/").content.decode()
        tile = re.search(r'<div class="kpi" id="kpi-cost">.*?</div></div>', dashboard, re.S).group(0)
        assert ">$0.0042<" in tile and "$0.00<" not in tile
        session = self.client.get("/o/alice-org/sessions/s1/").content.decode()
        assert ">$0.0042<" in session
        assert ">$0.0042<" in self.client.get("/o/alice-org/users/").content.decode()

    def test_a_cent_and_more_keeps_two_decimals(self):
        create_log(org=self.org, provider="openai", model="gpt-4o", status=200, prompt_tokens=10,
                   completion_tokens=5, cost_usd=Decimal("1234.5"), created_at=timezone.now() - timedelta(minutes=5))
        self.client.force_login(self.alice)
        assert ">$1,234.50<" in self.client.get("/o/alice-org/").content.decode()

    def test_no_cost_at_all_is_zero_dollars(self):
        self.client.force_login(self.alice)
        assert ">$0.00<" in self.client.get("/o/alice-org/").content.decode()


class SlugHelpTests(BaseTestCase):
    def test_the_slug_help_shows_the_url_shape_and_asks_to_be_filled_from_the_name(self):
        self.client.force_login(self.alice)
        html = self.client.get("/orgs/").content.decode()
        assert "<code>/o/&lt;slug&gt;/</code>" in html
        assert "/o//" not in html
        assert re.search(r'<input type="text" name="slug"[^>]*data-slug-from="id_name"', html)
        assert 'id="id_name"' in html


class EraseButtonTests(BaseTestCase):
    def test_erase_is_a_secondary_link_to_a_confirmation_page(self):
        create_log(org=self.org, provider="openai", model="gpt-4o-mini", status=200, user_id="ana",
                   created_at=timezone.now() - timedelta(minutes=5))
        self.client.force_login(self.alice)
        html = self.client.get("/o/alice-org/users/").content.decode()
        link = re.search(r'<a class="([^"]*)" href="(/o/alice-org/users/erase/\?[^"]*)"[^>]*>Erase…</a>', html)
        assert link, "an Erase… link on the user's row"
        classes = link.group(1).split()
        assert "secondary" in classes and "danger" in classes
        # Following it erases nothing: it asks first.
        confirm = self.client.get(link.group(2).replace("&amp;", "&"))
        assert confirm.status_code == 200 and b"It cannot be undone" in confirm.content
        assert self.client.get("/o/alice-org/requests/", {"user_id": "ana"}).context["rows"]
        # (That the link looks secondary, white with red text, is checked in a browser: test_browser_layout.py.)


class UnpricedLabelTests(BaseTestCase):
    def setUp(self):
        self.client.force_login(self.alice)

    def detail(self, log) -> str:
        return self.client.get(f"/o/alice-org/requests/{log.id}/").content.decode()

    def test_a_failed_call_of_a_priced_model_is_not_called_unpriced(self):
        failed = create_log(org=self.org, provider="openai", model="gpt-4o-mini", status=500,
                            error="upstream exploded", created_at=timezone.now())
        html = self.detail(failed)
        assert "unpriced" not in html
        assert "no token usage to price (the call failed)" in html
        row = self.client.get("/o/alice-org/requests/").content.decode()
        assert 'title="No token usage to price"' in row and "No known price for this model" not in row

    def test_usage_of_a_model_without_a_price_is_unpriced(self):
        log = create_log(org=self.org, provider="openai", model="my-finetune-nobody-prices", status=200,
                         prompt_tokens=10, completion_tokens=5, created_at=timezone.now())
        assert "unpriced (no known price for this model)" in self.detail(log)
        assert 'title="No known price for this model"' in self.client.get("/o/alice-org/requests/").content.decode()

    def test_usage_logged_before_its_model_had_a_price(self):
        log = create_log(org=self.org, provider="openai", model="gpt-4o-mini", status=200,
                         prompt_tokens=10, completion_tokens=5, cost_usd=None, created_at=timezone.now())
        html = self.detail(log)
        assert "unpriced" not in html and "not priced when logged" in html
