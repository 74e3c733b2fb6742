"""The request panel in a real browser (Debian's headless Chromium via Selenium, issue #22 items 1
and 5): a click on an explorer row opens the request beside the list, previous/next walk the list,
👍 and a score are saved (and on the full page after a reload), the copied curl names this gateway
and no secret, Escape and Back close the panel, and the session page shows the picked request
beside its trace. No console error."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.analytics.test_browser import browser  # noqa: F401  (its console log is kept: SEVERE entries are page errors)
from tests.analytics.test_browser_layout import console_errors, log_in, make_member
from tests.gateway.conftest import gateway, mock_provider  # noqa: F401

from .helpers import create_log

pytestmark = pytest.mark.django_db(transaction=True)


def make_logs(org) -> list:
    """Three requests, newest first as the explorer lists them; the two oldest are one session."""
    now = timezone.now()
    logs = []
    for minutes, model, session_path in [(1, "model-newest", ""), (2, "model-middle", "/plan/hotels"),
                                         (3, "model-oldest", "/plan")]:
        logs.append(create_log(
            org=org, provider="openai", model=model, status=200, latency_ms=300 + minutes, prompt_tokens=10,
            completion_tokens=4, cost_usd=Decimal("0.002"), created_at=now - timedelta(minutes=minutes),
            path="/v1/chat/completions", target_url="https://api.openai.com/v1/chat/completions",
            request_body=json.dumps({"model": model, "messages": [{"role": "user", "content": f"ask {model}"}]}),
            response_body=json.dumps({"choices": [{"message": {"role": "assistant", "content": f"said {model}"}}]}),
            request_headers={"authorization": "[redacted]", "helicone-auth": "[redacted]"},
            session_id="trip-1" if session_path else "", session_path=session_path))
    return logs


def panel_text(driver) -> str:
    return driver.execute_script("return document.getElementById('request-panel').textContent")


def test_the_request_panel_over_the_explorer_and_beside_a_session(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 10)
    _, org, _ = make_member("drawer@example.org")
    newest, middle, oldest = make_logs(org)
    title = (By.CSS_SELECTOR, "#request-panel .panel-title h2")
    log_in(browser, gateway.url, "drawer@example.org")

    explorer = f"{gateway.url}/o/{org.slug}/requests/"
    browser.get(explorer)
    row = browser.find_element(By.CSS_SELECTOR, f'#live-rows tr[data-request-id="{middle.id}"]')
    row.find_elements(By.TAG_NAME, "td")[3].click()  # the latency cell: anywhere on the row opens it
    wait.until(EC.text_to_be_present_in_element(title, "model-middle"))
    panel = browser.find_element(By.ID, "request-panel")
    assert panel.is_displayed() and "said model-middle" in panel.text
    assert browser.current_url == f"{explorer}#request={middle.id}"  # the list stays; the hash names the request
    assert "panel-selected" in row.get_attribute("class")
    assert panel.find_element(By.CSS_SELECTOR, ".panel-position").text == "2 of 3"

    panel.find_element(By.CSS_SELECTOR, "[data-panel-next]").click()
    wait.until(EC.text_to_be_present_in_element(title, "model-oldest"))
    assert panel.find_element(By.CSS_SELECTOR, "[data-panel-next]").get_attribute("disabled")
    panel.find_element(By.CSS_SELECTOR, "[data-panel-prev]").click()
    wait.until(EC.text_to_be_present_in_element(title, "model-middle"))
    panel.find_element(By.CSS_SELECTOR, "[data-panel-prev]").click()
    wait.until(EC.text_to_be_present_in_element(title, "model-newest"))
    assert browser.current_url == f"{explorer}#request={newest.id}"

    # 👍 and a score, saved from the panel (which then shows them).
    panel.find_element(By.CSS_SELECTOR, '.feedback-form button[value="up"]').click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#request-panel #feedback"), "👍 positive"))
    wait.until(lambda _: panel.find_element(By.CSS_SELECTOR, '.feedback-form button[value="up"]')
               .get_attribute("aria-pressed") == "true")
    panel.find_element(By.CSS_SELECTOR, ".score-form input[name=name]").send_keys("accuracy")
    panel.find_element(By.CSS_SELECTOR, ".score-form input[name=value]").send_keys("0.8")
    panel.find_element(By.CSS_SELECTOR, ".score-form button[type=submit]").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#request-panel dd.score"), "0.8"))

    # The replay curl: through this gateway, keys as shell variables, the logged body.
    curl = browser.execute_script("return document.getElementById('rp-curl').textContent")
    assert f"{gateway.url}/oai/v1/chat/completions" in curl and "ask model-newest" in curl
    assert '"Helicone-Auth: Bearer $HELICONE_API_KEY"' in curl and "$OPENAI_API_KEY" in curl
    assert "redacted" not in curl and "sk-" not in curl
    copy = panel.find_element(By.ID, "copy-curl")
    copy.click()
    wait.until(lambda _: copy.get_attribute("data-state") in ("copied", "failed"))

    # Escape closes; a click opens again and Back closes it, leaving the list where it was.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait.until(lambda _: not panel.is_displayed())
    assert browser.current_url == explorer
    browser.find_element(By.CSS_SELECTOR, f'#live-rows tr[data-request-id="{oldest.id}"] td a').click()
    wait.until(EC.text_to_be_present_in_element(title, "model-oldest"))
    assert browser.current_url.endswith(f"#request={oldest.id}")
    browser.back()
    wait.until(lambda _: not panel.is_displayed())
    assert browser.current_url == explorer and browser.find_element(By.ID, "live-rows").is_displayed()
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1
    assert console_errors(browser) == []

    # The dashboard's latest requests open the same panel.
    browser.get(f"{gateway.url}/o/{org.slug}/")
    browser.find_element(By.CSS_SELECTOR, f'#live-rows tr[data-request-id="{middle.id}"] td').click()
    wait.until(EC.text_to_be_present_in_element(title, "model-middle"))
    assert "/requests/" not in browser.current_url and "said model-middle" in panel_text(browser)
    browser.set_window_size(390, 844)  # on a phone the panel takes the width, and nothing scrolls sideways
    assert browser.find_element(By.ID, "request-panel").size["width"] <= 390
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
    browser.set_window_size(1280, 900)

    # The full request page keeps its URL and shows what the panel saved.
    browser.get(f"{gateway.url}/o/{org.slug}/requests/{newest.id}/")
    assert "👍 positive" in browser.find_element(By.ID, "feedback").text
    assert "0.8" in browser.find_element(By.CSS_SELECTOR, "dd.score").text
    assert "said model-newest" in browser.page_source and not browser.find_elements(By.CSS_SELECTOR, ".panel-bar")

    # The session: trace and timeline in one view, the picked request beside it.
    browser.get(f"{gateway.url}/o/{org.slug}/sessions/")
    # A session's row still goes to its page (only rows of requests open the panel).
    browser.find_elements(By.CSS_SELECTOR, "tr.row-link[data-href*='/sessions/trip-1/'] td")[1].click()
    wait.until(EC.url_contains("/sessions/trip-1/"))
    docked = browser.find_element(By.CSS_SELECTOR, "aside#request-panel.docked")
    assert "model-oldest" in docked.find_element(*title).text  # the session's first request
    trace = browser.find_element(By.CSS_SELECTOR, "section.trace")
    assert trace.location["x"] + trace.size["width"] <= docked.location["x"]  # side by side
    assert len(trace.find_elements(By.CSS_SELECTOR, ".trace-row .trace-lane .span")) == 2
    trace.find_element(By.CSS_SELECTOR, f'.trace-row[data-request-id="{middle.id}"]').click()
    wait.until(EC.text_to_be_present_in_element(title, "model-middle"))
    assert "said model-middle" in docked.text and browser.current_url.endswith(f"?request={middle.id}")
    assert trace.find_element(By.CSS_SELECTOR, ".trace-row[aria-current=true]").get_attribute(
        "data-request-id") == str(middle.id)
    browser.back()
    wait.until(EC.text_to_be_present_in_element(title, "model-oldest"))
    assert console_errors(browser) == []
