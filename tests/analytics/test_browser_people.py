"""Users and sessions in a real browser (Debian's headless Chromium via Selenium, issue #22 item 5):
a member pages through both lists past the first page, sorted, opens a user's page (charts, first
and last seen, top models, properties), goes on to the explorer filtered to that user, and finds a
session by its name; the user page fits a phone; no console error."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from analytics.models import RequestLog
from tests.analytics.test_browser import browser  # noqa: F401  (its console log is kept: SEVERE entries are page errors)
from tests.analytics.test_browser_layout import (
    DESKTOP,
    OVERFLOW_JS,
    PHONE,
    console_errors,
    log_in,
    make_member,
    viewport,
)
from tests.gateway.conftest import gateway, mock_provider  # noqa: F401

from .helpers import store

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = 57  # one page of 50 and a second of 7


def test_paging_both_lists_and_a_users_page(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 10)
    _, org, _ = make_member("people@example.org")
    now = timezone.now()
    store([RequestLog(org=org, provider="openai", model="gpt-4o" if i % 3 else "gpt-4o-mini", status=200,
                      latency_ms=200 + 10 * i, prompt_tokens=10, completion_tokens=5, cost_usd=Decimal(i) / 1000,
                      user_id=f"user-{i:02d}", session_id=f"sess-{i:02d}",
                      session_name="Refund bot" if i == 33 else f"Trip {i}", properties={"Plan": "pro"},
                      created_at=now - timedelta(minutes=2 * i + 1)) for i in range(PEOPLE)])
    log_in(browser, gateway.url, "people@example.org")
    base = f"{gateway.url}/o/{org.slug}"

    def rows(table: str) -> list[str]:
        return [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr td:first-child a")]

    # Users, most expensive first: page 1 is the 50 dearest, Next keeps the sort and the range.
    browser.get(f"{base}/users/?range=24h")
    browser.find_element(By.CSS_SELECTOR, "#user-rows th a[href$='sort=cost']").click()
    wait.until(EC.url_contains("sort=cost"))
    assert rows("user-rows") == [f"user-{i:02d}" for i in range(PEOPLE - 1, PEOPLE - 51, -1)]
    browser.find_element(By.ID, "page-next").click()
    wait.until(EC.url_contains("page=2"))
    query = parse_qs(urlsplit(browser.current_url).query)
    assert query["sort"] == ["cost"] and query["range"] == ["24h"]
    assert rows("user-rows") == [f"user-{i:02d}" for i in range(6, -1, -1)]
    assert not browser.find_elements(By.ID, "page-next")
    assert "51–57" in browser.find_element(By.ID, "page-info").text
    browser.find_element(By.ID, "page-prev").click()
    wait.until(EC.url_contains("page=1"))
    assert len(rows("user-rows")) == 50
    assert console_errors(browser) == []

    # One user's page, from the list.
    browser.find_element(By.LINK_TEXT, "user-40").click()
    wait.until(EC.url_contains("/user/?"))
    assert browser.find_element(By.ID, "user-id").text == "user-40"
    assert browser.find_element(By.CSS_SELECTOR, "#kpi-requests .value").text == "1"
    # Requests, cost and latency over time, drawn by the charting library; a click explores this user.
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".charts .chart-box .uplot")) == 3)
    explore = browser.execute_script("const s = window.heliconeCharts.specs['requests-chart'];"
                                     "return window.heliconeCharts.exploreUrl(s, s.times.length - 1, 1);")
    assert parse_qs(urlsplit(explore).query)["user_id"] == ["user-40"]
    assert parse_qs(urlsplit(explore).query)["status"] == ["error"]
    assert "gpt-4o" in browser.find_element(By.ID, "top-models").text
    assert "Plan" in browser.find_element(By.ID, "user-properties").text
    assert browser.find_element(By.ID, "first-seen").text and browser.find_element(By.ID, "last-seen").text
    assert console_errors(browser) == []
    viewport(browser, PHONE)
    browser.refresh()
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    found = browser.execute_script(OVERFLOW_JS)
    assert found["scrollWidth"] <= found["clientWidth"], found
    viewport(browser, DESKTOP)
    # On to the explorer, filtered to the user.
    browser.find_element(By.ID, "user-explorer").click()
    wait.until(EC.url_contains("/requests/"))
    assert parse_qs(urlsplit(browser.current_url).query)["user_id"] == ["user-40"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#live-rows tr[data-request-id]")) == 1

    # Sessions, newest first, over two pages; then found by name.
    browser.get(f"{base}/sessions/?range=24h")
    assert rows("session-rows")[0] == "Trip 0" and len(rows("session-rows")) == 50
    browser.find_element(By.ID, "page-next").click()
    wait.until(EC.url_contains("page=2"))
    assert rows("session-rows") == [f"Trip {i}" for i in range(50, PEOPLE)]
    search = browser.find_element(By.NAME, "session")
    search.send_keys("refund", Keys.ENTER)
    wait.until(EC.url_contains("session=refund"))
    assert rows("session-rows") == ["Refund bot"] and "page=" not in browser.current_url
    assert console_errors(browser) == []
