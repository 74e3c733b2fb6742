"""The CSP in a real browser (Debian's headless Chromium): the pages log in, render and run
their scripts with no Content-Security-Policy violation in the console."""

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from orgs.models import ApiKey, Membership, Organization, Role, User
from prompts.models import Prompt, PromptVersion
from tests.analytics.test_browser import browser  # noqa: F401
from tests.gateway.conftest import gateway, mock_provider, wait_for_log  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a long and unusual passphrase 42"


def csp_violations(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


def test_pages_run_their_scripts_without_csp_violations(browser, gateway):  # noqa: F811
    wait = WebDriverWait(browser, 15)
    # Signed up in the browser: daphne checks passwords with the production hashers.
    browser.get(gateway.url + "/signup/")
    browser.find_element(By.NAME, "email").send_keys("csp@example.org")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait.until(EC.url_contains("/orgs/"))
    browser.delete_all_cookies()
    user = User.objects.get(email="csp@example.org")
    org = Organization.objects.create(name="CSP Org", slug="csp-org")
    Membership.objects.create(org=org, user=user, role=Role.OWNER)
    _, raw = ApiKey.generate(org, "csp", ["proxy", "read", "write"], created_by=user)
    prompt = Prompt.objects.create(org=org, slug="greeting", name="Greeting")
    PromptVersion.objects.create(org=org, prompt=prompt, version=1, model="gpt-4o-mini", template_hash="x",
                                 messages=[{"role": "user", "content": "hi"}])
    response = httpx.post(gateway.url + "/oai/v1/chat/completions", timeout=30,
                          headers={"Helicone-Auth": f"Bearer {raw}", "Helicone-Property-Feature": "chat",
                                   "Helicone-Property-Env": "prod"},
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    log_id = response.headers["helicone-id"]
    wait_for_log(log_id)

    browser.get(gateway.url + "/login/")
    browser.find_element(By.NAME, "username").send_keys(user.email)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait.until(EC.url_contains("/orgs/"))

    # Inline scripts run (their nonce matches): the live socket connects, tabs switch, the picker submits.
    browser.get(f"{gateway.url}/o/csp-org/requests/")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".live-dot"), "Live"))
    browser.get(f"{gateway.url}/o/csp-org/requests/{log_id}/")
    tabs = browser.find_elements(By.CSS_SELECTOR, "[data-tab]")
    assert len(tabs) > 1
    tabs[-1].click()
    assert tabs[-1].get_attribute("aria-selected") == "true"
    browser.get(f"{gateway.url}/o/csp-org/?range=24h")
    select = browser.find_element(By.CSS_SELECTOR, "select[data-autosubmit]")
    select.find_elements(By.TAG_NAME, "option")[-1].click()
    wait.until(EC.url_contains("property="))
    for path in ("/o/csp-org/prompts/greeting/", "/o/csp-org/alerts/", "/account/2fa/", "/api/v1/docs"):
        browser.get(gateway.url + path)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#swagger-ui .info")))  # Swagger UI rendered
    assert csp_violations(browser) == []
