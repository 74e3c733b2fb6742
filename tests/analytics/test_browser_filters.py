"""The explorer's filter builder and saved views in a real browser (Debian's headless Chromium via
Selenium, issue #22 item 3): a member builds two conditions (the operator list follows the field),
removes one chip, switches to OR, saves the view, and opens it again from the list; no console error."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from analytics.models import SavedView
from tests.analytics.test_browser import browser  # noqa: F401  (its console log is kept: SEVERE entries are page errors)
from tests.analytics.test_browser_layout import console_errors, log_in, make_member
from tests.gateway.conftest import gateway, mock_provider  # noqa: F401

from .helpers import create_log

pytestmark = pytest.mark.django_db(transaction=True)


def test_build_two_conditions_remove_a_chip_save_and_reopen_a_view(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 15)
    _, org, _ = make_member("filters@example.org")
    now = timezone.now()
    for minutes, (model, latency, env) in enumerate([("gpt-4o", 2500, "prod"), ("gpt-4o", 300, "staging"),
                                                      ("gpt-4o-mini", 3100, "staging"), ("claude-x", 90, "prod")]):
        create_log(org=org, provider="openai", model=model, status=200, latency_ms=latency, prompt_tokens=10,
                   completion_tokens=4, cost_usd=Decimal("0.002"), properties={"Env": env},
                   created_at=now - timedelta(minutes=minutes + 1))

    def models() -> list[str]:
        # The model cell's first line (the provider may be shown under it).
        return [row.find_element(By.CSS_SELECTOR, "td:nth-child(3)").text.split("\n")[0]
                for row in browser.find_elements(By.CSS_SELECTOR, "#live-rows tr:not(.placeholder)")]

    def add(field: str, op: str, value: str, key: str = "") -> None:
        Select(browser.find_element(By.ID, "fb-field")).select_by_value(field)
        if key:
            browser.find_element(By.ID, "fb-key").send_keys(key)
        Select(browser.find_element(By.ID, "fb-op")).select_by_value(op)
        browser.find_element(By.ID, "fb-value").send_keys(value)
        current = browser.current_url
        browser.find_element(By.ID, "fb-add").click()
        wait.until(lambda driver: driver.current_url != current and driver.find_elements(By.ID, "filter-chips"))

    log_in(browser, gateway.url, "filters@example.org")
    browser.get(f"{gateway.url}/o/{org.slug}/requests/")
    assert len(models()) == 4

    # A number field offers = ≠ > <; a property offers = ≠ contains and asks for its name.
    Select(browser.find_element(By.ID, "fb-field")).select_by_value("latency_ms")
    ops = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "fb-op")).options]
    assert ops == ["eq", "ne", "gt", "lt"] and not browser.find_element(By.ID, "fb-key").is_displayed()
    Select(browser.find_element(By.ID, "fb-field")).select_by_value("property")
    ops = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "fb-op")).options]
    assert ops == ["eq", "ne", "contains"] and browser.find_element(By.ID, "fb-key").is_displayed()

    add("latency_ms", "gt", "1000")
    add("property", "eq", "prod", key="Env")
    chips = [chip.text.rstrip("×").strip() for chip in browser.find_elements(By.CSS_SELECTOR, ".filter-chip")]
    assert chips == ["Latency (ms) > 1000", "property Env = prod"]
    assert models() == ["gpt-4o"]
    assert parse_qs(urlsplit(browser.current_url).query)["f"] == ["latency_ms:gt:1000", "property.Env:eq:prod"]

    # Remove the latency chip: the property condition stays.
    browser.find_element(By.CSS_SELECTOR, ".filter-chip[data-param='latency_ms:gt:1000'] .filter-chip-remove").click()
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".filter-chip")) == 1)
    assert sorted(models()) == ["claude-x", "gpt-4o"]

    # Back to two conditions, matched with OR.
    add("model", "contains", "MINI")
    browser.find_element(By.ID, "filter-toggle-join").click()
    wait.until(EC.url_contains("join=or"))
    assert sorted(models()) == ["claude-x", "gpt-4o", "gpt-4o-mini"]

    # Save it, leave, and open it from the saved views.
    browser.find_element(By.ID, "sv-name").send_keys("Prod or mini")
    browser.find_element(By.CSS_SELECTOR, "#saved-view-save button[type=submit]").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".messages"), "Saved the view"))
    view = SavedView.objects.get(org=org)
    saved = parse_qs(view.query)
    assert saved["f"] == ["property.Env:eq:prod", "model:contains:MINI"] and saved["join"] == ["or"]
    assert saved["range"] == ["24h"]  # the form's range and sort are kept too
    browser.get(f"{gateway.url}/o/{org.slug}/requests/")
    assert len(models()) == 4
    browser.find_element(By.LINK_TEXT, "Prod or mini").click()
    wait.until(EC.url_contains("join=or"))
    assert sorted(models()) == ["claude-x", "gpt-4o", "gpt-4o-mini"]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".filter-chip")) == 2
    assert browser.find_element(By.CSS_SELECTOR, ".saved-view-open[aria-current='true']").text == "Prod or mini"
    assert console_errors(browser) == []

    # Delete it (confirmed first).
    browser.find_element(By.CSS_SELECTOR, ".saved-view-delete button").click()
    wait.until(EC.alert_is_present())
    browser.switch_to.alert.accept()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".messages"), "Deleted the view"))
    assert not SavedView.objects.filter(org=org).exists()
    assert console_errors(browser) == []
