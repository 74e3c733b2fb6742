"""The live dashboard in a real browser (Debian's headless Chromium via Selenium, issue #22 item 4):
requests proxied while the page is open change every tile, the charts and the top lists, and they
agree with each other and with the page a reload shows (never "100 % error rate / 0 failed");
the live rows' times read as the server's do. No console error."""

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from orgs.models import ApiKey
from tests.analytics.test_browser import browser  # noqa: F401  (its console log is kept: SEVERE entries are page errors)
from tests.analytics.test_browser_layout import console_errors, log_in, make_member
from tests.gateway.conftest import gateway, mock_provider  # noqa: F401

from .helpers import create_log

pytestmark = pytest.mark.django_db(transaction=True)

TILES = ("kpi-requests", "kpi-cost", "kpi-tokens", "kpi-errors", "kpi-latency", "kpi-ttft", "kpi-cache", "kpi-users")
LISTS = ("top-models", "top-users", "top-values")


def snapshot(driver) -> dict:
    from selenium.webdriver.common.by import By

    """Each tile's value and note ("12%", "3 failed"), each top list's rows."""
    tiles = {name: (driver.find_element(By.CSS_SELECTOR, f"#{name} .value").text,
                    driver.find_element(By.CSS_SELECTOR, f"#{name} .sub").text) for name in TILES}
    return tiles | {name: driver.find_element(By.ID, name).text for name in LISTS}


def chart_totals(driver) -> dict[str, list[float]]:
    """Each chart's series, summed over the buckets, as the charting library holds them."""
    return driver.execute_script("""
        const out = {};
        for (const [id, spec] of Object.entries(window.heliconeCharts.specs)) {
          out[id] = spec.series.map(s => s.values.reduce((a, v) => a + (v || 0), 0));
        }
        return out;""")


def test_a_proxied_request_updates_every_tile_chart_and_top_list_consistently(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    _, org, _ = make_member("live-dash@example.org")
    _, raw_key = ApiKey.generate(org, "live", ["proxy"])
    create_log(org=org, provider="openai", model="gpt-4o-mini", status=500, error="upstream failed", latency_ms=900,
               prompt_tokens=10, completion_tokens=0, cost_usd=Decimal("0.00002"), user_id="first-user",
               properties={"Feature": "chat"}, created_at=timezone.now() - timedelta(minutes=30))

    log_in(browser, gateway.url, "live-dash@example.org")
    browser.get(f"{gateway.url}/o/{org.slug}/")
    WebDriverWait(browser, 15).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".live-dot"), "Live"))
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return !!window.heliconeCharts"))
    before = snapshot(browser)
    assert before["kpi-requests"][0] == "1" and before["kpi-errors"] == ("100%", "1 failed")
    assert chart_totals(browser)["requests-chart"] == [0, 1]

    # Two calls while the page is open: a streamed one (time to first token), then the same again,
    # answered from the cache.
    body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "live dashboard"}]}
    headers = {"Helicone-Auth": f"Bearer {raw_key}", "Authorization": "Bearer sk-upstream",
               "Helicone-User-Id": "second-user", "Helicone-Property-Feature": "search",
               "Helicone-Cache-Enabled": "true"}
    for _ in range(2):
        with httpx.stream("POST", gateway.url + "/oai/v1/chat/completions", json=body, headers=headers,
                          timeout=10) as response:
            assert response.status_code == 200
            response.read()
    WebDriverWait(browser, 15).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#live-rows tr[data-id]")) == 2)
    WebDriverWait(browser, 15).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#kpi-requests .value").text == "3"
        and "second-user" in d.find_element(By.ID, "top-users").text)
    after = snapshot(browser)

    # Every tile and every top list changed, and they agree with each other.
    assert [name for name in TILES + LISTS if after[name] == before[name]] == []
    assert after["kpi-requests"][0] == "3" and after["kpi-errors"] == ("33%", "1 failed")
    assert after["kpi-cache"][0] == "33%" and after["kpi-users"][0] == "2" and after["kpi-ttft"][0].endswith("ms")
    assert "search" in after["top-values"] and "chat" in after["top-values"]
    totals = chart_totals(browser)
    assert totals["requests-chart"] == [2, 1] and totals["errors-chart"] == [1]
    # The page was never reloaded: the stream and the page's own reads did it.
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1

    # A reload shows the same figures, and the live rows' times read as the server's rows do.
    live_times = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#live-rows tr td:first-child")]
    browser.refresh()
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return !!window.heliconeCharts"))
    assert snapshot(browser) == after
    assert chart_totals(browser) == totals
    assert [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#live-rows tr td:first-child")] == live_times
    assert console_errors(browser) == []
