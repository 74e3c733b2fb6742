"""A real browser (Debian's headless Chromium via Selenium): sign up, create an org and a key,
send a request through the gateway, and see it appear live in the request explorer."""

import os
import shutil
import uuid

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,900"]


def _unavailable(reason: str):
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " and REQUIRE_SERVICES=1 (make test installs chromium and chromium-driver)")
    pytest.skip(reason)


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed")
    chromium = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    driver_path = shutil.which("chromedriver") or (CHROMEDRIVER if os.path.exists(CHROMEDRIVER) else None)
    if not chromium or not driver_path:
        _unavailable("Debian's chromium and chromium-driver are not installed")
    options = Options()
    options.binary_location = chromium
    for arg in ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # driver.get_log("browser"): page errors
    # An explicit driver path: Selenium Manager never downloads a browser or a driver.
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def test_signup_org_key_and_a_proxied_request_appears_live(browser, gateway):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    slug = f"live-{uuid.uuid4().hex[:6]}"

    browser.get(gateway.url + "/signup/")
    browser.find_element(By.NAME, "email").send_keys(f"{slug}@example.org")
    browser.find_element(By.NAME, "password").send_keys("a long and unusual passphrase 42")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait.until(EC.url_contains("/orgs/"))

    browser.find_element(By.NAME, "name").send_keys("Live Test")
    slug_input = browser.find_element(By.NAME, "slug")
    slug_input.clear()
    slug_input.send_keys(slug)
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait.until(EC.url_contains(f"/o/{slug}/"))

    browser.get(f"{gateway.url}/o/{slug}/settings/keys/")
    browser.find_element(By.NAME, "name").send_keys("browser test")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    raw_key = wait.until(EC.presence_of_element_located((By.ID, "new-key"))).text.strip()
    assert raw_key.startswith("sk-helicone-")

    browser.get(f"{gateway.url}/o/{slug}/requests/")
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".live-dot"), "Live"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#live-rows tr[data-id]")

    response = httpx.post(
        gateway.url + "/oai/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello from the browser test"}]},
        headers={"Helicone-Auth": f"Bearer {raw_key}", "Authorization": "Bearer sk-upstream",
                 "Helicone-User-Id": "browser-user"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["helicone-id"]

    row = WebDriverWait(browser, 5).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, f'#live-rows tr[data-id="{request_id}"]')))
    assert "gpt-4o-mini" in row.text and "browser-user" in row.text and "200" in row.text
    # The page was never reloaded: the row came over the WebSocket.
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1
    row.find_element(By.CSS_SELECTOR, "a").click()
    wait.until(EC.url_contains(request_id))
    assert "hello from the browser test" in browser.page_source
