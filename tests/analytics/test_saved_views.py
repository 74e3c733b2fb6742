"""Saved views (issue #22 item 3): members save the explorer's current query under a name, every
member sees the org's list and opens one, members delete one; each change is audited; viewers only
read; another org's views are a 404."""

from urllib.parse import parse_qs, urlsplit

from analytics.models import SavedView
from orgs.models import AuditEvent, Membership, Role, User
from tests.base import PASSWORD, BaseTestCase

URL = "/o/alice-org/requests/"
SAVE = "/o/alice-org/requests/views/"
QUERY = "f=latency_ms%3Agt%3A1000&f=property.Env%3Aeq%3Aprod&join=or&range=7d"


class SavedViewsTests(BaseTestCase):
    def setUp(self):
        self.client.force_login(self.bob)

    def save(self, name: str, query: str = QUERY):
        return self.client.post(SAVE, {"name": name, "query": query})

    def test_a_member_saves_lists_opens_and_deletes_a_view(self):
        response = self.save("  Slow   prod ")
        assert response.status_code == 302
        view = SavedView.objects.get(org=self.org)
        assert view.name == "Slow prod" and view.created_by == self.bob
        assert parse_qs(view.query) == parse_qs(QUERY)
        assert parse_qs(urlsplit(response["Location"]).query) == parse_qs(QUERY)  # back on the saved view
        event = AuditEvent.objects.get(action="saved_view.create")
        assert event.org == self.org and event.changes["name"] == "Slow prod"

        # Every member (alice too) sees it on the explorer, as a link to the same filters.
        self.client.force_login(self.alice)
        html = self.client.get(URL).content.decode()
        assert "Slow prod" in html and f'href="?{view.query.replace("&", "&amp;")}"' in html
        opened = self.client.get(URL + "?" + view.query)
        assert [chip["label"] for chip in opened.context["chips"]] == ["Latency (ms) > 1000", "property Env = prod"]
        assert opened.context["join"] == "or" and opened.context["range"] == "7d"
        assert 'aria-current="true">Slow prod<' in opened.content.decode()

        # Saving the same name again points it at the new filters.
        assert self.save("Slow prod", "model=gpt-4o&page=3&user_id=").status_code == 302
        view.refresh_from_db()
        assert view.query == "model=gpt-4o" and SavedView.objects.filter(org=self.org).count() == 1
        assert AuditEvent.objects.filter(action="saved_view.update").count() == 1

        response = self.client.post(f"{SAVE}{view.pk}/delete/", {"next": "?model=gpt-4o"})
        assert response.status_code == 302 and response["Location"] == URL + "?model=gpt-4o"
        assert not SavedView.objects.filter(pk=view.pk).exists()
        assert AuditEvent.objects.get(action="saved_view.delete").changes["name"] == "Slow prod"

    def test_bad_saves_are_a_400_naming_the_problem(self):
        cases = {("", QUERY): "the name is empty", ("x" * 101, QUERY): "at most 100",
                 ("Bad", "f=latency_ms:gt:fast"): "latency_ms compares with a number",
                 ("Bad range", "from=yesterday"): "Invalid &#x27;from&#x27;"}
        for (name, query), message in cases.items():
            with self.subTest(name=name[:10]):
                response = self.save(name, query)
                assert response.status_code == 400 and message in response.content.decode()
        assert not SavedView.objects.exists()
        assert self.client.get(SAVE).status_code == 405

    def test_viewers_read_only(self):
        SavedView.objects.create(org=self.org, name="Errors", query="status=error")
        viewer = User.objects.create_user("vera@example.org", PASSWORD)
        Membership.objects.create(org=self.org, user=viewer, role=Role.VIEWER)
        self.client.force_login(viewer)
        html = self.client.get(URL).content.decode()
        assert "Errors" in html and 'id="saved-view-save"' not in html and "saved-view-delete" not in html
        assert self.save("Mine").status_code == 403
        view = SavedView.objects.get(name="Errors")
        assert self.client.post(f"{SAVE}{view.pk}/delete/").status_code == 403
        assert SavedView.objects.filter(org=self.org).count() == 1

    def test_outsiders_get_404_and_see_no_views(self):
        view = SavedView.objects.create(org=self.org, name="Alice's secret view", query="model=x")
        self.client.force_login(self.charlie)
        assert self.save("Pwned").status_code == 404
        assert self.client.post(f"{SAVE}{view.pk}/delete/").status_code == 404
        # Through his own org, alice-org's view id is not found either.
        assert self.client.post(f"/o/charlie-org/requests/views/{view.pk}/delete/").status_code == 404
        assert "secret view" not in self.client.get("/o/charlie-org/requests/").content.decode()
        assert SavedView.objects.filter(pk=view.pk).exists() and not SavedView.objects.filter(name="Pwned").exists()
