"""The dashboard's charts in a real browser (Debian's headless Chromium via Selenium, issue #22 item 2),
drawn by uPlot served from the project's own static files: a click on a column opens the explorer
filtered to that bucket and series, a drag across a chart zooms the page to that time range (from/to
in the URL), and a chart with a single bucket of data still draws (the latency chart in a new org's
first hour, the admin's error-rate chart); no console error."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.utils import timezone

from analytics.queries import parse_instant
from orgs.models import User
from tests.analytics.test_browser import browser  # noqa: F401  (its console log is kept: SEVERE entries are page errors)
from tests.analytics.test_browser_layout import PASSWORD, console_errors, log_in, make_member
from tests.gateway.conftest import gateway, mock_provider  # noqa: F401

from .helpers import create_log

pytestmark = pytest.mark.django_db(transaction=True)

# Counts the coloured pixels of a chart's canvas (the series; the grid and axes are grey).
PIXELS_JS = """
const chart = window.heliconeCharts.charts[arguments[0]];
const canvas = chart.ctx.canvas, data = chart.ctx.getImageData(0, 0, canvas.width, canvas.height).data;
let found = 0;
for (let i = 0; i < data.length; i += 4) {
  const rgb = [data[i], data[i + 1], data[i + 2]];
  if (data[i + 3] > 200 && Math.max(...rgb) - Math.min(...rgb) > 80) found++;
}
return found;
"""
# Where on the chart's plot (CSS pixels from the centre of its .u-over, as Selenium offsets are) a
# bucket's time and a value are.
POSITION_JS = """
const chart = window.heliconeCharts.charts[arguments[0]], over = chart.over.getBoundingClientRect();
return [chart.valToPos(arguments[1], "x") - over.width / 2, chart.valToPos(arguments[2], "y") - over.height / 2];
"""


def operator_session() -> str:
    from django.contrib.sessions.backends.db import SessionStore
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    operator = User.objects.create_superuser("operator@example.org", PASSWORD)
    device = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    session = SessionStore()
    session.update({"_auth_user_id": str(operator.pk), "_auth_user_backend": settings.AUTHENTICATION_BACKENDS[0],
                    "_auth_user_hash": operator.get_session_auth_hash(),
                    DEVICE_ID_SESSION_KEY: device.persistent_id})
    session.create()
    return session.session_key


def wait_for_chart(driver, chart_id: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "return !!(window.heliconeCharts && window.heliconeCharts.charts[arguments[0]])", chart_id))
    box = driver.find_element(By.CSS_SELECTOR, f'[data-chart="{chart_id}"]')
    assert not box.find_elements(By.CSS_SELECTOR, "svg.chart")  # the library's canvas replaced the SVG
    return box.find_element(By.CSS_SELECTOR, ".u-over")


def test_click_filters_the_explorer_drag_zooms_and_one_bucket_draws(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    _, org, newcomer = make_member("charts@example.org")
    now = timezone.now()
    busy_hour = (now - timedelta(hours=5)).replace(minute=10, second=0, microsecond=0)
    for model, status in (("ok-one", 200), ("ok-two", 200), ("the-failure", 500)):
        create_log(org=org, provider="openai", model=model, status=status, latency_ms=400, prompt_tokens=10,
                   completion_tokens=5, cost_usd=Decimal("0.001"), created_at=busy_hour)
    create_log(org=org, provider="openai", model="later-one", status=200, latency_ms=300, prompt_tokens=10,
               completion_tokens=5, cost_usd=Decimal("0.001"), created_at=now - timedelta(minutes=20))
    # The newcomer's first hour: one log, so one bucket of data in every chart.
    create_log(org=newcomer, provider="openai", model="first", status=500, latency_ms=640, prompt_tokens=10,
               completion_tokens=5, cost_usd=Decimal("0.001"), created_at=now - timedelta(minutes=5))

    log_in(browser, gateway.url, "charts@example.org")
    browser.get(f"{gateway.url}/o/{org.slug}/")
    over = wait_for_chart(browser, "requests-chart")
    spec = browser.execute_script("return window.heliconeCharts.specs['requests-chart']")
    bucket = spec["times"].index(int(busy_hour.replace(minute=0).timestamp()))
    assert spec["series"][0]["values"][bucket] == 2 and spec["series"][1]["values"][bucket] == 1

    # Hover: the crosshair's legend names the bucket and its values.
    x, _ = browser.execute_script(POSITION_JS, "requests-chart", spec["times"][bucket], 1)
    ActionChains(browser).move_to_element_with_offset(over, int(x), 0).perform()
    legend = browser.find_element(By.CSS_SELECTOR, '[data-chart="requests-chart"] .u-legend').text
    assert f"{busy_hour:%b %d %H}:00 UTC" in legend and "successful2" in legend and "errors1" in legend
    assert legend.index("successful") < legend.index("errors")  # the stack's order, bottom first

    # A click on the bucket's red (errors) segment: the explorer, that hour, errors only.
    x, y = browser.execute_script(POSITION_JS, "requests-chart", spec["times"][bucket], 2.5)
    ActionChains(browser).move_to_element_with_offset(over, int(x), int(y)).click().perform()
    WebDriverWait(browser, 10).until(EC.url_contains("/requests/"))
    query = parse_qs(urlsplit(browser.current_url).query)
    assert query["status"] == ["error"]
    assert parse_instant(query["from"][0], "from") == busy_hour.replace(minute=0)
    assert parse_instant(query["to"][0], "to") == busy_hour.replace(minute=0) + timedelta(hours=1)
    rows = browser.find_element(By.ID, "live-rows").text
    assert "the-failure" in rows and "ok-one" not in rows and "later-one" not in rows
    assert console_errors(browser) == []

    # A drag across the requests chart from 7 hours ago to 3 hours ago zooms the page to that range.
    browser.get(f"{gateway.url}/o/{org.slug}/?range=24h")
    over = wait_for_chart(browser, "requests-chart")
    start, end = now - timedelta(hours=7), now - timedelta(hours=3)
    x0, y = browser.execute_script(POSITION_JS, "requests-chart", start.timestamp(), 0.5)
    x1, _ = browser.execute_script(POSITION_JS, "requests-chart", end.timestamp(), 0.5)
    ActionChains(browser).move_to_element_with_offset(over, int(x0), int(y)).click_and_hold() \
        .move_by_offset(int((x1 - x0) / 2), 0).move_by_offset(int(x1 - x0) - int((x1 - x0) / 2), 0) \
        .release().perform()
    WebDriverWait(browser, 10).until(EC.url_contains("to="))
    query = parse_qs(urlsplit(browser.current_url).query)
    assert "range" not in query
    chosen = parse_instant(query["from"][0], "from"), parse_instant(query["to"][0], "to")
    assert abs((chosen[0] - start).total_seconds()) < 15 * 60 and abs((chosen[1] - end).total_seconds()) < 15 * 60
    assert browser.find_element(By.CSS_SELECTOR, "#kpi-requests .value").text == "3"  # the busy hour alone
    assert "UTC –" in browser.find_element(By.ID, "range-active").text
    wait_for_chart(browser, "requests-chart")
    times = browser.execute_script("return window.heliconeCharts.specs['requests-chart'].times")
    assert 4 <= len(times) <= 5 and times[0] <= chosen[0].timestamp() and times[-1] < chosen[1].timestamp()
    assert console_errors(browser) == []

    # One bucket of data draws: the newcomer's latency chart shows its single P50 point.
    browser.get(f"{gateway.url}/o/{newcomer.slug}/")
    wait_for_chart(browser, "latency-chart")
    values = browser.execute_script("return window.heliconeCharts.specs['latency-chart'].series[0].values")
    assert len([v for v in values if v is not None]) == 1
    assert browser.execute_script(PIXELS_JS, "latency-chart") > 10
    assert browser.execute_script(PIXELS_JS, "errors-chart") > 10
    assert console_errors(browser) == []

    # And the admin's error-rate chart, whose only bucket with requests is this hour (an operator's
    # verified session, as test_browser_layout makes one: the admin asks for a one-time code).
    browser.delete_all_cookies()
    browser.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": operator_session(), "path": "/"})
    browser.get(f"{gateway.url}/admin/analytics/requestlog/figures/?org={newcomer.slug}")
    wait_for_chart(browser, "error-rate-chart")
    assert browser.execute_script(PIXELS_JS, "error-rate-chart") > 10
    assert console_errors(browser) == []


def test_without_javascript_the_page_has_the_svg_charts_their_data_and_the_top_lists_links(client):
    user, org, _ = make_member("no-js@example.org")
    log = create_log(org=org, provider="openai", model="solo-model", status=200, latency_ms=640, prompt_tokens=10,
                     completion_tokens=5, cost_usd=Decimal("0.001"), user_id="solo user", properties={"Env": "prod"},
                     created_at=timezone.now() - timedelta(minutes=5))
    client.force_login(user)
    response = client.get(f"/o/{org.slug}/")
    html = response.content.decode()
    assert html.count('<svg class="chart"') == 4
    for chart_id in ("requests-chart", "cost-chart", "latency-chart", "errors-chart"):
        assert f'<script id="{chart_id}" type="application/json">' in html and f'data-chart="{chart_id}"' in html
    latency = response.context["latency_chart"]
    assert '<circle cx="' in latency["svg"] and 'r="3.5" fill="#4f46e5"' in latency["svg"]  # one bucket: a dot
    spec = latency["spec"]
    assert spec["kind"] == "lines" and spec["format"] == "ms" and spec["step"] == 3600
    assert [v for v in spec["series"][0]["values"] if v is not None] == [640.0]
    hour = log.created_at.replace(minute=0, second=0, microsecond=0)
    assert spec["times"][spec["series"][0]["values"].index(640.0)] == int(hour.timestamp())
    assert spec["explore"] == f"/o/{org.slug}/requests/" and spec["series"][0]["params"] == {"sort": "slowest"}
    assert response.context["requests_chart"]["spec"]["series"][1]["params"] == {"status": "error"}
    explorer = f"/o/{org.slug}/requests/?range=24h&amp;"
    assert f'<a href="{explorer}model=solo-model">solo-model</a>' in html
    assert f'<a href="{explorer}user_id=solo+user">solo user</a>' in html
    assert f'<a href="{explorer}prop_key=Env&amp;prop_value=prod">prod</a>' in html
