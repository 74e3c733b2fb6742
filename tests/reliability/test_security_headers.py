"""Security headers and CSRF on the pages.

Every page a member can open is fetched (the URL table of test_security_isolation);
each must carry the CSP with this response's nonce on every inline script and style,
no inline event handlers, frame denial, no-sniff and a referrer policy; HSTS only
over TLS. Every POST form found carries the CSRF token, and posting it without the
token is refused with 403.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from django.test import Client, override_settings

from orgs.models import ApiKey, AuditEvent
from tests.base import PASSWORD
from tests.orgs.helpers import USER_AGENT

from .test_security_isolation import CASES, OrgObjectsTestCase


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self.inline: list[tuple[str, str | None]] = []  # (tag, nonce) of inline scripts and styles
        self.handlers: list[str] = []
        self._form: dict | None = None
        self._pending: tuple[str, dict] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.handlers += [f"<{tag} {name}=…>" for name in attrs if name.startswith("on")]
        if tag == "form" and (attrs.get("method") or "get").lower() == "post":
            self._form = {"action": attrs.get("action"), "fields": {}}
            self.forms.append(self._form)
        elif tag in ("input", "select", "textarea", "button") and self._form is not None and attrs.get("name"):
            self._form["fields"][attrs["name"]] = attrs.get("value") or ""
        elif tag == "style" or (tag == "script" and not attrs.get("src")
                                and attrs.get("type", "text/javascript") in ("text/javascript", "module")):
            self.inline.append((tag, attrs.get("nonce")))

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


def page_urls(test: OrgObjectsTestCase) -> list[str]:
    return [test.url(case) for case in CASES.values()
            if case.kind in ("public", "account", "org") and not case.url.startswith("/api/")]


class PageHeaderTests(OrgObjectsTestCase):
    def fetch_pages(self, client: Client):
        for url in page_urls(self):
            response = client.get(url)
            if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
                yield url, response

    def test_every_page_has_the_csp_and_its_nonce_on_every_inline_script_and_style(self):
        self.client.force_login(self.alice)
        pages = 0
        for url, response in self.fetch_pages(self.client):
            pages += 1
            with self.subTest(url=url):
                csp = response["Content-Security-Policy"]
                directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
                self.assertEqual(directives["default-src"], "'self'")
                self.assertEqual(directives["frame-ancestors"], "'none'")
                self.assertEqual(directives["object-src"], "'none'")
                self.assertNotIn("unsafe-inline", directives["script-src"])
                self.assertNotIn("unsafe-inline", directives["style-src"])
                parser = PageParser()
                parser.feed(response.content.decode())
                self.assertEqual(parser.handlers, [], "inline event handlers are blocked by the CSP")
                if parser.inline:
                    nonce = re.search(r"'nonce-([^']+)'", directives["script-src"]).group(1)
                    self.assertIn(f"'nonce-{nonce}'", directives["style-src"])
                    self.assertEqual([n for _, n in parser.inline], [nonce] * len(parser.inline), parser.inline)
                self.assertEqual(response["X-Frame-Options"], "DENY")
                self.assertEqual(response["X-Content-Type-Options"], "nosniff")
                self.assertEqual(response["Referrer-Policy"], "same-origin")
                self.assertNotIn("Strict-Transport-Security", response)
        self.assertGreater(pages, 30)

    def test_the_nonce_changes_with_every_response(self):
        self.client.force_login(self.alice)
        nonces = {re.search(r"'nonce-([^']+)'", self.client.get("/o/alice-org/")["Content-Security-Policy"]).group(1)
                  for _ in range(3)}
        self.assertEqual(len(nonces), 3)

    @override_settings(SECURE_HSTS_SECONDS=31536000)
    def test_hsts_only_over_tls(self):
        self.assertEqual(self.client.get("/login/", secure=True)["Strict-Transport-Security"], "max-age=31536000")
        self.assertNotIn("Strict-Transport-Security", self.client.get("/login/"))

    def test_the_admin_and_api_docs_have_the_headers_too(self):
        for url in ("/admin/login/", "/api/v1/docs"):
            with self.subTest(url=url):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 200)
                self.assertIn("default-src 'self'", response["Content-Security-Policy"])
                self.assertEqual(response["X-Frame-Options"], "DENY")
                # The API docs load Swagger UI from our own static files, which the CSP allows.
                self.assertNotIn(b"cdn.", response.content)


class CsrfTests(OrgObjectsTestCase):
    def test_every_post_form_carries_the_token_and_posting_without_it_is_refused(self):
        browser = Client(headers={"user-agent": USER_AGENT})
        browser.force_login(self.alice)
        forms: dict[str, dict] = {}
        for url in page_urls(self) + ["/account/password/", "/login/", "/signup/"]:
            response = browser.get(url)
            if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
                continue
            parser = PageParser()
            parser.feed(response.content.decode())
            for form in parser.forms:
                action = form["action"] or url
                with self.subTest(page=url, action=action):
                    self.assertTrue(form["fields"].get("csrfmiddlewaretoken"), f"a POST form on {url} has no token")
                forms.setdefault(action, form["fields"])
        self.assertGreater(len(forms), 15)

        # The same forms posted from a session without the token (another site's page would do this).
        forger = Client(enforce_csrf_checks=True, headers={"user-agent": USER_AGENT})
        forger.force_login(self.alice)
        forger.get("/orgs/")  # has a CSRF cookie, just not the token in the form
        events = AuditEvent.objects.count()
        for action, fields in forms.items():
            with self.subTest(action=action):
                data = {name: value for name, value in fields.items() if name != "csrfmiddlewaretoken"}
                response = forger.post(action, data)
                self.assertEqual(response.status_code, 403, action)
        self.assertEqual(AuditEvent.objects.count(), events)
        self.assertIsNotNone(ApiKey.find_active(self.raw))

    def test_login_form_without_the_token_is_refused(self):
        client = Client(enforce_csrf_checks=True)
        response = client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
        self.assertEqual(response.status_code, 403)
        self.assertNotIn("_auth_user_id", client.session)

    def test_the_browsable_prompts_api_needs_the_token_for_changes_with_a_session(self):
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        response = client.post("/api/v1/prompts/", {"id": "x", "name": "x", "model": "m",
                                                    "messages": [{"role": "user", "content": "hi"}]},
                               content_type="application/json")
        self.assertEqual(response.status_code, 403)
        self.assertIn("CSRF", response.json()["detail"])
