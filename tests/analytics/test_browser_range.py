"""A custom time range in a real browser (Debian's headless Chromium via Selenium, issue #22 item 3):
a member types From and To (UTC) on the dashboard, the URL carries them, and the page shows that
range and only its logs, as does the explorer it links to; no console error."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from tests.analytics.test_browser import browser  # noqa: F401  (its console log is kept: SEVERE entries are page errors)
from tests.analytics.test_browser_layout import console_errors, log_in, make_member
from tests.gateway.conftest import gateway, mock_provider  # noqa: F401

from .helpers import create_log

pytestmark = pytest.mark.django_db(transaction=True)


def type_datetime(element, moment) -> None:
    """Fills a datetime-local input with a time and fires its input and change events, as picking
    it in the widget does. (Typing it segment by segment depends on the browser's locale and lost
    keystrokes on a busy machine: the widget is Chromium's, the form and the URL are ours.)"""
    element.parent.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
        "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
        element, moment.strftime("%Y-%m-%dT%H:%M"))


def test_a_typed_custom_range_travels_in_the_url_and_selects_its_logs(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    _, org, _ = make_member("range@example.org")
    start = (timezone.now() - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=2)
    for model, created_at in {"too-early": start - timedelta(minutes=5), "first-in": start,
                              "second-in": start + timedelta(minutes=90), "too-late": end}.items():
        create_log(org=org, provider="openai", model=model, status=200, latency_ms=300, prompt_tokens=10,
                   completion_tokens=4, cost_usd=Decimal("0.002"), created_at=created_at)

    log_in(browser, gateway.url, "range@example.org")
    browser.get(f"{gateway.url}/o/{org.slug}/?range=7d")
    assert browser.find_element(By.CSS_SELECTOR, "#kpi-requests .value").text == "4"

    form = browser.find_element(By.CSS_SELECTOR, "form.range-custom")
    from_input, to_input = form.find_element(By.NAME, "from"), form.find_element(By.NAME, "to")
    from_input.clear()
    type_datetime(from_input, start)
    type_datetime(to_input, end)
    assert from_input.get_attribute("value") == start.strftime("%Y-%m-%dT%H:%M")
    assert to_input.get_attribute("value") == end.strftime("%Y-%m-%dT%H:%M")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.url_contains("to="))

    query = parse_qs(urlsplit(browser.current_url).query)
    assert query["from"] == [start.strftime("%Y-%m-%dT%H:%M")] and query["to"] == [end.strftime("%Y-%m-%dT%H:%M")]
    label = f"{start:%Y-%m-%d %H:%M} UTC – {end:%Y-%m-%d %H:%M} UTC"
    assert browser.find_element(By.ID, "range-active").text == label
    assert browser.find_element(By.CSS_SELECTOR, "#kpi-requests .value").text == "2"
    latest = browser.find_element(By.ID, "live-rows").text
    assert "first-in" in latest and "second-in" in latest and "too-early" not in latest and "too-late" not in latest
    assert not browser.find_elements(By.CSS_SELECTOR, "[aria-current='true']")  # no preset is the active one
    assert console_errors(browser) == []

    # The same link, opened again, is the same page: then on to the explorer, with the range.
    shared = browser.current_url
    browser.get(shared)
    assert browser.find_element(By.CSS_SELECTOR, "#kpi-requests .value").text == "2"
    browser.find_element(By.ID, "explore-all").click()
    WebDriverWait(browser, 10).until(EC.url_contains("/requests/"))
    assert parse_qs(urlsplit(browser.current_url).query)["from"] == query["from"]
    rows = browser.find_element(By.ID, "live-rows").text
    assert "first-in" in rows and "second-in" in rows and "too-early" not in rows and "too-late" not in rows
    assert browser.find_element(By.ID, "range-active").text == label
    assert console_errors(browser) == []
