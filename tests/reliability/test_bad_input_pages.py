"""A NUL character in a page or API URL is a 400 naming it, on every database.

PostgreSQL text cannot hold NUL, so a lookup with one used to fail as a 500 on
pages that take an id from the path or a filter from the query string.
"""

from tests.base import BaseTestCase

URLS = [
    "/o/alice-org/sessions/a%00b/",
    "/o/alice-org/prompts/a%00b/",
    "/o/alice-org/?property=Env%00",
    "/o/alice-org/requests/?prop_key=Env%00&prop_value=x",
    "/o/alice-org/requests/?model=gpt%00",
    "/api/v1/requests?user_id=a%00b",
]


class NulInUrlTests(BaseTestCase):
    def test_nul_in_a_url_is_a_400_naming_it(self):
        self.client.force_login(self.alice)
        _key, raw = self.make_key(scopes=("read",))
        for url in URLS:
            with self.subTest(url=url):
                response = self.client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw}")
                assert response.status_code == 400
                # The APIs answer in their own error shape, pages in plain text.
                text = response.json()["detail"] if url.startswith("/api/") else response.content.decode()
                assert "NUL character" in text

    def test_the_same_pages_without_nul_answer(self):
        self.client.force_login(self.alice)
        for url in ["/o/alice-org/?property=Env", "/o/alice-org/requests/?prop_key=Env&prop_value=x",
                    "/o/alice-org/requests/?model=gpt"]:
            with self.subTest(url=url):
                assert self.client.get(url).status_code == 200
