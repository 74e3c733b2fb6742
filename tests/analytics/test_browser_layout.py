"""Phones, narrow windows and a new user's first minutes, in a real browser (Debian's headless
Chromium via Selenium, issue #22 items 7 and 8): no page scrolls sideways at 390 px, no page logs a
console error, the org navigation never hides an item, the slug follows the org's name, and the
one-time key has a copy button."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import timezone

from analytics.models import AlertEvent, AlertRule, RequestLog, Webhook
from orgs.models import Membership, Organization, Role, User
from prompts.models import Prompt, PromptVersion
from tests.analytics.test_browser import browser  # noqa: F401  (its console log is kept: SEVERE entries are page errors)
from tests.gateway.conftest import gateway, mock_provider  # noqa: F401

from .helpers import create_log, make_logs

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a long and unusual passphrase 42"
PHONE, DESKTOP = (390, 844), (1440, 900)
LONG = "a-very-long-unbroken-value-" * 8  # 216 characters without a space: it must wrap or scroll in its box


def viewport(driver, size: tuple[int, int]) -> None:
    """The page's viewport, in CSS pixels. A headless window is at least 500 px wide, so the
    width is set the way DevTools' device toolbar sets it."""
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def make_member(email: str, role: str = Role.OWNER) -> tuple[User, Organization, Organization]:
    """A user of an org with logs (and of an org without any). The password hash is PBKDF2, which
    daphne checks (the test process's own hasher is MD5, for speed), with few iterations."""
    user = User.objects.create(email=email, password=PBKDF2PasswordHasher().encode(PASSWORD, "layoutsalt", 1000))
    org = Organization.objects.create(name="Phone Org", slug=f"phone-{uuid.uuid4().hex[:6]}")
    empty = Organization.objects.create(name="Empty Org", slug=f"empty-{uuid.uuid4().hex[:6]}")
    Membership.objects.create(org=org, user=user, role=role)
    Membership.objects.create(org=empty, user=user, role=role)
    return user, org, empty


def log_in(driver, base_url: str, email: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base_url + "/login/")
    driver.find_element(By.NAME, "username").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    WebDriverWait(driver, 15).until(EC.url_contains("/orgs/"))


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# The page's width against the viewport's, and what sticks out (outside any box that scrolls itself).
OVERFLOW_JS = """
const root = document.documentElement, width = root.clientWidth, out = [];
for (const el of document.body.querySelectorAll("*")) {
  const box = el.getBoundingClientRect();
  if (box.width === 0 || box.right <= width + 0.5) continue;
  let scrolls = false;
  for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
    if (getComputedStyle(up).overflowX !== "visible") { scrolls = true; break; }
  }
  const classes = typeof el.className === "string" ? el.className.trim().replace(/\\s+/g, ".") : "";
  if (!scrolls) out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (classes ? "." + classes : ""));
}
return {scrollWidth: root.scrollWidth, clientWidth: width, innerWidth: window.innerWidth,
        sticking_out: out.slice(0, 5)};
"""


def check_page(driver, url: str, problems: list[str]) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
    found = driver.execute_script(OVERFLOW_JS)
    if found["scrollWidth"] > found["innerWidth"] or found["scrollWidth"] > found["clientWidth"]:
        problems.append(f"{url} scrolls sideways: {found}")
    errors = console_errors(driver)
    if errors:
        problems.append(f"{url} logged console errors: {errors}")


def test_no_page_scrolls_sideways_on_a_phone_and_none_logs_a_console_error(browser, gateway):  # noqa: F811
    user, org, empty = make_member("phone@example.org")
    make_logs(org, n=12)
    now = timezone.now()
    long_session = "session-" + LONG
    detail = create_log(
        org=org, provider="openai", model="gpt-4o-mini-" + LONG[:60], status=200, latency_ms=850, ttft_ms=90,
        prompt_tokens=12, completion_tokens=30, cost_usd=Decimal("0.0042"), user_id="user-" + LONG,
        session_id=long_session, session_path="/plan/" + LONG[:80], session_name="Trip " + LONG[:60],
        properties={"Feature": LONG, "Env": "prod"}, request_name="plan-" + LONG[:40], created_at=now,
        request_body='{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + LONG * 3 + '"}]}',
        response_body='{"choices": [{"message": {"role": "assistant", "content": "' + LONG * 3 + '"}}]}',
    )
    create_log(org=org, provider="openai", model="gpt-4o", status=500, error="upstream exploded " + LONG,
               user_id="user-" + LONG, session_id=long_session, session_path="/plan", created_at=now)
    prompt = Prompt.objects.create(org=org, slug="greeting", name="Greeting")
    PromptVersion.objects.create(org=org, prompt=prompt, version=1, model="gpt-4o-mini", template_hash="x",
                                 messages=[{"role": "user", "content": "Hello {{name}}, " + LONG}])
    rule = AlertRule.objects.create(org=org, name="Errors", metric="error_rate", threshold=10, muted=True)
    AlertEvent.objects.create(org=org, rule=rule, value=42.5, threshold=10, request_count=30)
    Webhook.objects.create(org=org, url="https://hooks.example.org/" + LONG, secret="s3cret")

    viewport(browser, PHONE)
    # Signed out: the sign-in and sign-up pages.
    problems: list[str] = []
    for path in ("/login/", "/signup/"):
        check_page(browser, gateway.url + path, problems)
    log_in(browser, gateway.url, user.email)
    o = f"/o/{org.slug}"
    pages = [
        f"{o}/", f"/o/{empty.slug}/", f"{o}/requests/", f"{o}/requests/{detail.id}/", f"{o}/users/",
        f"{o}/user/?id=u1", f"{o}/users/erase/?user_id=u1", f"{o}/sessions/", f"{o}/requests/?f=latency_ms:gt:0",
        f"{o}/prompts/greeting/versions/new/", f"{o}/sessions/{long_session}/", f"{o}/prompts/",
        f"{o}/prompts/greeting/", f"{o}/prompts/greeting/versions/1/", f"{o}/alerts/", f"{o}/alerts/new/",
        f"{o}/alerts/history/", f"{o}/alerts/webhooks/", f"{o}/alerts/deliveries/", f"{o}/settings/",
        f"{o}/settings/keys/", f"{o}/settings/members/", f"{o}/settings/audit/", f"{o}/settings/rate-limits/",
        f"{o}/settings/semantic-cache/", "/orgs/", "/account/2fa/", "/account/password/",
    ]
    for path in pages:
        check_page(browser, gateway.url + path, problems)
    assert problems == []


def test_every_org_navigation_item_is_visible_on_a_desktop_and_reachable_on_a_phone(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    user, org, _ = make_member("nav@example.org")  # an owner: every item, "Settings" last but one
    viewport(browser, DESKTOP)
    log_in(browser, gateway.url, user.email)
    browser.get(f"{gateway.url}/o/{org.slug}/")
    links = browser.find_elements(By.CSS_SELECTOR, "nav.orgnav a")
    names = [link.text for link in links]
    assert {"Dashboard", "Requests", "Users", "Alerts", "Prompts", "API keys", "Settings", "API docs"} <= set(names)
    for link in links:
        # Inside the viewport and not covered or clipped: the point at its centre is the link itself.
        assert browser.execute_script("""
            const a = arguments[0], box = a.getBoundingClientRect();
            if (box.width === 0 || box.left < 0 || box.top < 0) return false;
            if (box.right > innerWidth || box.bottom > innerHeight) return false;
            return a.contains(document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2));
        """, link), f"{link.text!r} is clipped or hidden at 1440 px"
    next(link for link in links if link.text == "Settings").click()
    WebDriverWait(browser, 10).until(EC.url_contains(f"/o/{org.slug}/settings/"))
    assert browser.find_element(By.CSS_SELECTOR, 'nav.orgnav a[aria-current="page"]').text == "Settings"
    browser.find_element(By.LINK_TEXT, "API docs").click()
    WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#swagger-ui .info")))

    # On a phone the navigation scrolls within itself: the page does not, and every item can be brought into view.
    viewport(browser, PHONE)
    browser.get(f"{gateway.url}/o/{org.slug}/settings/")
    current = browser.find_element(By.CSS_SELECTOR, 'nav.orgnav a[aria-current="page"]')
    in_view = "const b = arguments[0].getBoundingClientRect(); return b.left >= 0 && b.right <= innerWidth;"
    assert browser.execute_script(in_view, current), "the current page's item is scrolled into view"
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    for link in browser.find_elements(By.CSS_SELECTOR, "nav.orgnav a"):
        browser.execute_script("arguments[0].scrollIntoView({block: 'nearest', inline: 'nearest'})", link)
        assert browser.execute_script("""
            const box = arguments[0].getBoundingClientRect();
            return box.left >= 0 && box.right <= innerWidth && document.documentElement.scrollLeft === 0;
        """, link), f"{link.text!r} cannot be reached at 390 px"
    assert console_errors(browser) == []


def test_the_slug_follows_the_org_name_until_the_user_edits_it(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    user, _, _ = make_member("slug@example.org")
    viewport(browser, PHONE)
    log_in(browser, gateway.url, user.email)
    name = browser.find_element(By.NAME, "name")
    slug = browser.find_element(By.NAME, "slug")
    name.send_keys("Café Ünïcode & Sons, Ltd.")
    assert slug.get_attribute("value") == "cafe-unicode-sons-ltd"
    # The user's own slug wins from then on.
    slug.clear()
    slug.send_keys("cafe")
    name.send_keys(" Europe")
    assert slug.get_attribute("value") == "cafe"
    assert name.get_attribute("value") == "Café Ünïcode & Sons, Ltd. Europe"
    help_text = browser.find_element(By.ID, "id_slug_helptext").text
    assert "/o/<slug>/" in help_text
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    WebDriverWait(browser, 15).until(EC.url_contains("/o/cafe/"))
    assert Organization.objects.get(slug="cafe").name == "Café Ünïcode & Sons, Ltd. Europe"


def test_the_one_time_key_and_the_quick_start_have_copy_buttons(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    user, org, empty = make_member("keys@example.org")
    viewport(browser, PHONE)
    log_in(browser, gateway.url, user.email)
    browser.get(f"{gateway.url}/o/{org.slug}/settings/keys/")
    browser.find_element(By.NAME, "name").send_keys("phone app")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    raw_key = wait.until(EC.presence_of_element_located((By.ID, "new-key"))).text.strip()
    assert raw_key.startswith("sk-helicone-")
    button = browser.find_element(By.CSS_SELECTOR, 'button[data-copy="new-key"]')
    assert button.text == "Copy"
    button.click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, 'button[data-copy="new-key"]'), "Copied"))
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")

    # The empty dashboard's snippet: this server's URL, the header, no key; its copy button works too.
    browser.get(f"{gateway.url}/o/{empty.slug}/")
    snippet = browser.find_element(By.ID, "quickstart-openai").text
    assert f'base_url="{gateway.url}/oai/v1"' in snippet
    assert '"Helicone-Auth": "Bearer <your gateway API key>"' in snippet
    assert raw_key not in browser.page_source
    browser.find_element(By.CSS_SELECTOR, 'button[data-copy="quickstart-openai"]').click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, 'button[data-copy="quickstart-openai"]'), "Copied"))
    assert console_errors(browser) == []


def test_the_erase_button_is_secondary_and_asks_first(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    user, org, _ = make_member("erase@example.org")
    create_log(org=org, provider="openai", model="gpt-4o-mini", status=200, user_id="ana",
               created_at=timezone.now() - timedelta(minutes=1))
    viewport(browser, DESKTOP)
    log_in(browser, gateway.url, user.email)
    browser.get(f"{gateway.url}/o/{org.slug}/users/")
    erase = browser.find_element(By.LINK_TEXT, "Erase…")
    style = browser.execute_script("const s = getComputedStyle(arguments[0]); return [s.backgroundColor, s.color];",
                                   erase)
    assert style[0] == "rgb(255, 255, 255)", "a destructive action is not a primary (filled) button"
    assert style[1] != "rgb(255, 255, 255)"
    erase.click()
    WebDriverWait(browser, 10).until(EC.url_contains("/users/erase/"))
    assert "It cannot be undone" in browser.page_source
    assert RequestLog.objects.filter(org=org, user_id="ana").exists()  # nothing erased until the form is sent


def test_the_operators_own_admin_pages_do_not_scroll_sideways_on_a_phone(browser, gateway):  # noqa: F811
    """The admin pages drawn by our templates (the index's operator links, site figures, unpriced models,
    the request log list with its search form and pager, an organization with its tools)."""
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    operator = User.objects.create_superuser("operator@example.org", PASSWORD)
    device = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    _, org, _ = make_member("owner@example.org")
    make_logs(org, n=8)
    # A verified operator's session (the admin's login asks for a one-time code: that flow has its own tests).
    session = SessionStore()
    session.update({"_auth_user_id": str(operator.pk), "_auth_user_backend": settings.AUTHENTICATION_BACKENDS[0],
                    "_auth_user_hash": operator.get_session_auth_hash(),
                    DEVICE_ID_SESSION_KEY: device.persistent_id})
    session.create()
    viewport(browser, PHONE)
    browser.get(gateway.url + "/login/")
    browser.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": session.session_key, "path": "/"})
    problems: list[str] = []
    for path in ("/admin/", "/admin/analytics/requestlog/figures/", "/admin/analytics/modelprice/unpriced/",
                 "/admin/analytics/requestlog/", f"/admin/orgs/organization/{org.pk}/change/"):
        check_page(browser, gateway.url + path, problems)
        assert "/admin/login/" not in browser.current_url, path
    assert problems == []
