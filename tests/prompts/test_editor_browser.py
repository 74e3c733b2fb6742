"""The prompt editor in a real browser (Debian's headless Chromium via Selenium, issue #22 item 6):
a member writes a prompt of two messages with a variable, sees the variable highlighted as typed,
adds, moves and removes a row without a reload, is stopped by a validation error naming the message,
fixes it and saves; the editor fits a phone; no console error."""

import pytest

from prompts.models import Prompt
from tests.analytics.test_browser import browser  # noqa: F401  (its console log is kept: SEVERE entries are page errors)
from tests.analytics.test_browser_layout import OVERFLOW_JS, console_errors, log_in, make_member, viewport
from tests.gateway.conftest import gateway, mock_provider  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_write_two_messages_see_the_variable_fix_an_error_and_save(browser, gateway):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    _, org, _ = make_member("editor@example.org")
    log_in(browser, gateway.url, "editor@example.org")
    browser.get(f"{gateway.url}/o/{org.slug}/prompts/")
    navigations = "return performance.getEntriesByType('navigation').length"

    def rows():
        return browser.find_elements(By.CSS_SELECTOR, "#message-rows [data-message-row]")

    def fill(textarea, text):
        textarea.clear()
        textarea.send_keys(text)

    browser.find_element(By.NAME, "id").send_keys("translator")
    browser.find_element(By.NAME, "name").send_keys("Translator")
    browser.find_element(By.NAME, "model").send_keys("gpt-4o-mini")

    # Message 1 starts as a user message; it becomes the system message, with a variable.
    first = rows()[0]
    Select(first.find_element(By.TAG_NAME, "select")).select_by_value("system")
    fill(first.find_element(By.TAG_NAME, "textarea"), "You translate into {{language}}.")
    marks = first.find_elements(By.CSS_SELECTOR, ".message-highlight mark")
    assert [(m.text or m.get_attribute("textContent"), m.get_attribute("class")) for m in marks] == [
        ("{{language}}", "var")]
    assert marks[0].value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"  # visibly marked
    area = first.find_element(By.TAG_NAME, "textarea").rect
    mark = marks[0].rect
    assert area["x"] < mark["x"] < area["x"] + area["width"] and area["y"] < mark["y"] < area["y"] + area["height"]
    assert first.find_element(By.CSS_SELECTOR, ".message-vars").text == "Variables: {{language}}"

    # A second message, added in place; a third, moved up, then removed: no reload.
    add = browser.find_element(By.CSS_SELECTOR, "button[data-editor='add']")
    add.click()
    second = rows()[1]
    assert browser.switch_to.active_element == second.find_element(By.TAG_NAME, "textarea")
    second.find_element(By.TAG_NAME, "textarea").send_keys("Translate: {{text")
    assert second.find_element(By.CSS_SELECTOR, ".message-highlight mark.bad")
    add.click()
    third = rows()[2]
    Select(third.find_element(By.TAG_NAME, "select")).select_by_value("assistant")
    third.find_element(By.TAG_NAME, "textarea").send_keys("Sure.")
    third.find_element(By.CSS_SELECTOR, "button[data-editor='up']").click()
    assert [r.find_element(By.TAG_NAME, "textarea").get_attribute("value") for r in rows()] == [
        "You translate into {{language}}.", "Sure.", "Translate: {{text"]
    assert [r.find_element(By.CSS_SELECTOR, ".message-label").text for r in rows()] == [
        "Message 1", "Message 2", "Message 3"]
    rows()[1].find_element(By.CSS_SELECTOR, "button[data-editor='remove']").click()
    assert len(rows()) == 2
    assert browser.execute_script(navigations) == 1

    # Saving is refused in the page, naming the message; nothing reaches the server.
    browser.find_element(By.CSS_SELECTOR, "form[data-prompt-form] > button[type=submit]:last-of-type").click()
    summary = browser.find_element(By.ID, "editor-errors")
    assert summary.is_displayed()
    expected = "Message 2 (user): '{{' in “{{text” is never closed with '}}'"
    assert expected in summary.text
    assert rows()[1].find_element(By.CSS_SELECTOR, ".message-errors").text == expected
    assert browser.switch_to.active_element == rows()[1].find_element(By.TAG_NAME, "textarea")
    assert browser.execute_script(navigations) == 1 and not Prompt.objects.filter(slug="translator").exists()

    # Fixing it clears the error as it is typed; then it saves.
    rows()[1].find_element(By.TAG_NAME, "textarea").send_keys("}}")
    assert not summary.is_displayed() and rows()[1].find_element(By.CSS_SELECTOR, ".message-errors").text == ""
    assert rows()[1].find_element(By.CSS_SELECTOR, ".message-vars").text == "Variables: {{text}}"
    browser.find_element(By.CSS_SELECTOR, "form[data-prompt-form] > button[type=submit]:last-of-type").click()
    WebDriverWait(browser, 10).until(EC.url_contains("/prompts/translator/"))
    version = Prompt.objects.get(org=org, slug="translator").versions.get()
    assert version.messages == [{"role": "system", "content": "You translate into {{language}}."},
                                {"role": "user", "content": "Translate: {{text}}"}]
    assert [v["name"] for v in version.variables] == ["language", "text"]
    assert console_errors(browser) == []

    # The new-version page starts from it, and fits a phone.
    viewport(browser, (390, 844))
    browser.get(f"{gateway.url}/o/{org.slug}/prompts/translator/versions/new/")
    assert [r.find_element(By.CSS_SELECTOR, ".message-vars").text for r in rows()] == [
        "Variables: {{language}}", "Variables: {{text}}"]
    found = browser.execute_script(OVERFLOW_JS)
    assert found["scrollWidth"] <= found["clientWidth"], found
    assert console_errors(browser) == []
