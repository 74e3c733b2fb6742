"""Site-wide figures and unpriced models: what an operator reads off the console."""

import re
from datetime import timedelta
from decimal import Decimal

from django.core.cache import cache
from django.utils import timezone

from analytics import site_figures
from analytics.models import ModelPrice, RequestLog
from orgs.models import AuditEvent
from tests.analytics.helpers import create_log

from .helpers import AdminTestCase

FIGURES = "/admin/analytics/requestlog/figures/"
UNPRICED = "/admin/analytics/modelprice/unpriced/"


def log(org, minutes_ago: float, **values) -> RequestLog:
    values.setdefault("provider", "openai")
    values.setdefault("status", 200)
    return create_log(org=org, created_at=timezone.now() - timedelta(minutes=minutes_ago), **values)


class SiteFiguresTests(AdminTestCase):
    def setUp(self):
        super().setUp()
        for window in site_figures.WINDOWS:
            for slug in ("", "charlie-org"):
                cache.delete(site_figures.cache_key(window, slug))
        log(self.org, 5, cost_usd=Decimal("0.5"))
        log(self.org, 30, cost_usd=Decimal("0.5"))
        log(self.org, 90, status=500)
        log(self.other_org, 10, cost_usd=Decimal("2"))
        log(self.other_org, 2 * 24 * 60, cost_usd=Decimal("7"))  # outside 24 h, inside 7 days
        log(self.other_org, 40 * 24 * 60, cost_usd=Decimal("100"))  # outside every window

    def test_last_24_hours(self):
        response = self.client.get(FIGURES)
        figures = response.context["figures"]
        self.assertEqual(figures.totals, {"requests": 4, "errors": 1, "error_rate": 0.25, "cost": 3.0,
                                          "active_orgs": 2})
        self.assertEqual(figures.top_by_volume, [("alice-org", 3), ("charlie-org", 1)])
        self.assertEqual(figures.top_by_cost, [("charlie-org", 2.0), ("alice-org", 1.0)])
        self.assertEqual(len(figures.times), 24)
        self.assertEqual(sum(figures.requests), 4)
        self.assertEqual(max(figures.active_orgs), 2)
        self.assertContains(response, '<svg class="chart"', count=4)
        self.assertContains(response, "alice-org")
        self.assertContains(response, "25%")

    def test_longer_window_and_one_org(self):
        figures = self.client.get(FIGURES + "?window=7d").context["figures"]
        self.assertEqual((figures.totals["requests"], figures.totals["cost"]), (5, 10.0))
        self.assertEqual(len(figures.times), 7)
        figures = self.client.get(FIGURES + "?window=30d&org=charlie-org").context["figures"]
        self.assertEqual((figures.totals["requests"], figures.totals["active_orgs"]), (2, 1))
        self.assertEqual(figures.top_by_volume, [("charlie-org", 2)])

    def test_the_pages_own_styles_pass_the_csp(self):
        response = self.client.get(FIGURES)
        nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
        self.assertEqual(re.findall(r'<style nonce="([^"]*)"', response.content.decode()), [nonce])
        self.assertNotIn("<style>", response.content.decode())

    def test_an_unknown_window_falls_back_to_24_hours(self):
        self.assertEqual(self.client.get(FIGURES + "?window=5y").context["figures"].window, "24h")


class UnpricedModelsTests(AdminTestCase):
    def setUp(self):
        super().setUp()
        log(self.org, 5, model="house-llm-v2", prompt_tokens=10, completion_tokens=5)
        log(self.other_org, 6, model="house-llm-v2", prompt_tokens=10, completion_tokens=5)
        log(self.org, 7, model="gpt-4o-mini", prompt_tokens=10, completion_tokens=5, cost_usd=Decimal("0.001"))
        log(self.org, 8, model="failed-model", status=500)  # no usage: nothing to price
        log(self.org, 60 * 24 * 45, model="ancient-llm", prompt_tokens=1, completion_tokens=1)  # too old

    def test_lists_models_without_a_price_with_an_add_link(self):
        response = self.client.get(UNPRICED)
        self.assertEqual([(row["model"].model, row["model"].requests) for row in response.context["rows"]],
                         [("house-llm-v2", 2)])
        self.assertContains(response, 'href="/admin/analytics/modelprice/add/?provider=openai&amp;model=house-llm-v2"')
        form = self.client.get("/admin/analytics/modelprice/add/?provider=openai&model=house-llm-v2")
        self.assertContains(form, 'value="house-llm-v2"')

        response = self.client.post("/admin/analytics/modelprice/add/", {
            "provider": "openai", "model": "house-llm-v2", "input_per_mtok": "0.5", "output_per_mtok": "1.5"})
        self.assertEqual(response.status_code, 302)
        event = AuditEvent.objects.get(action="admin.add", target_type="analytics.modelprice")
        self.assertEqual(event.actor_user, self.operator)
        self.assertEqual(self.client.get(UNPRICED).context["rows"], [])

    def test_a_model_priced_by_genai_prices_data_or_an_any_provider_override_is_not_listed(self):
        log(self.org, 9, model="gpt-4o", prompt_tokens=10, completion_tokens=5)  # logged before a price existed
        ModelPrice.objects.create(provider="", model="house-llm-v2", input_per_mtok=1, output_per_mtok=1)
        self.assertEqual(self.client.get(UNPRICED).context["rows"], [])
