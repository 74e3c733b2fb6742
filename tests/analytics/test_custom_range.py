"""A custom time range (`from`/`to` in the URL) on every page that shows a range (issue #22 item 3):
each format the contract accepts selects exactly the logs in [from, to), a bad range is a 400 that
names the parameter, the presets still work, and the links on a page keep the range."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape

from django.utils import timezone

from tests.base import BaseTestCase

from .helpers import create_log, make_logs

PAGES = ("", "requests/", "users/", "sessions/")


class CustomRangeTests(BaseTestCase):
    def setUp(self):
        # Three days ago, on the hour: the range [start, end) is one hour, away from every preset's edge.
        self.start = (timezone.now() - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
        self.end = self.start + timedelta(hours=1)
        times = {
            "before-from": self.start - timedelta(minutes=50),
            "at-from": self.start,
            "in-the-middle": self.start + timedelta(minutes=30),
            "last-second": self.end - timedelta(seconds=1),
            "at-to": self.end,
            "after-to": self.end + timedelta(hours=2),
        }
        for model, created_at in times.items():
            create_log(org=self.org, provider="openai", model=model, status=200, latency_ms=100,
                       prompt_tokens=10, completion_tokens=5, cost_usd=Decimal("0.001"), user_id=f"user-{model}",
                       session_id=f"session-{model}", properties={"Feature": "chat"}, created_at=created_at)
        create_log(org=self.other_org, provider="openai", model="in-the-middle-elsewhere", status=200,
                   user_id="charlie-user", created_at=self.start + timedelta(minutes=30))
        self.inside = {"at-from", "in-the-middle", "last-second"}
        self.outside = {"before-from", "at-to", "after-to", "in-the-middle-elsewhere"}
        self.client.force_login(self.alice)

    def formats(self) -> dict[str, tuple[str, str]]:
        plus_two = timezone.get_fixed_timezone(120)
        return {
            "ISO with Z": (self.start.strftime("%Y-%m-%dT%H:%M:%SZ"), self.end.strftime("%Y-%m-%dT%H:%M:%SZ")),
            "ISO with +02:00": (self.start.astimezone(plus_two).isoformat(), self.end.astimezone(plus_two).isoformat()),
            "ISO without a zone (UTC)": (self.start.strftime("%Y-%m-%dT%H:%M:%S"),
                                         self.end.strftime("%Y-%m-%dT%H:%M:%S")),
            "epoch seconds": (str(int(self.start.timestamp())), str(int(self.end.timestamp()))),
            "epoch milliseconds": (str(int(self.start.timestamp() * 1000)), str(int(self.end.timestamp() * 1000))),
        }

    def shown_models(self, html: str) -> set[str]:
        return {model for model in self.inside | self.outside if f">{model}<" in html}

    def test_each_format_selects_exactly_the_logs_in_the_range_on_the_dashboard_and_the_explorer(self):
        for name, (start, end) in self.formats().items():
            with self.subTest(name):
                dashboard = self.client.get("/o/alice-org/", {"from": start, "to": end})
                assert dashboard.status_code == 200
                assert dashboard.context["totals"]["count"] == 3
                html = dashboard.content.decode()
                assert 'data-value="3"' in html  # the Requests tile
                assert self.shown_models(html) == self.inside  # the latest requests

                explorer = self.client.get("/o/alice-org/requests/", {"from": start, "to": end})
                assert explorer.status_code == 200
                assert {log.model for log in explorer.context["rows"]} == self.inside
                assert self.shown_models(explorer.content.decode()) == self.inside

    def test_an_offset_typed_into_a_link_unencoded_still_reads_as_plus_two_hours(self):
        # "+02:00" in a query string that nobody encoded arrives as " 02:00".
        local = timezone.get_fixed_timezone(120)
        start, end = (moment.astimezone(local).strftime("%Y-%m-%dT%H:%M") for moment in (self.start, self.end))
        response = self.client.get(f"/o/alice-org/requests/?from={start}+02:00&to={end}+02:00")
        assert {log.model for log in response.context["rows"]} == self.inside

    def test_users_and_sessions_pages_show_only_the_range(self):
        start, end = self.formats()["ISO with Z"]
        users = self.client.get("/o/alice-org/users/", {"from": start, "to": end})
        assert {u["user_id"] for u in users.context["users"]} == {f"user-{m}" for m in self.inside}
        sessions = self.client.get("/o/alice-org/sessions/", {"from": start, "to": end})
        assert {s["session_id"] for s in sessions.context["sessions"]} == {f"session-{m}" for m in self.inside}

    def test_the_active_range_is_shown_in_one_format(self):
        start, end = self.formats()["epoch milliseconds"]
        label = f"{self.start:%Y-%m-%d %H:%M} UTC – {self.end:%Y-%m-%d %H:%M} UTC"
        for page in PAGES:
            html = self.client.get(f"/o/alice-org/{page}", {"from": start, "to": end}).content.decode()
            assert label in html, page
            # The form shows the bounds again, in UTC, as a datetime-local input takes them.
            assert f'value="{self.start:%Y-%m-%dT%H:%M}"' in html and f'value="{self.end:%Y-%m-%dT%H:%M}"' in html, page

    def test_a_missing_to_is_now_and_a_missing_from_is_the_default_range_before_to(self):
        start, end = self.formats()["ISO with Z"]
        only_from = self.client.get("/o/alice-org/requests/", {"from": start})
        assert {log.model for log in only_from.context["rows"]} == {"at-from", "in-the-middle", "last-second",
                                                                    "at-to", "after-to"}
        only_to = self.client.get("/o/alice-org/", {"to": end})
        assert only_to.context["totals"]["count"] == 4  # the 24 hours before `to`: "before-from" too
        assert only_to.context["start"] == self.end - timedelta(hours=24)

    def test_errors_are_a_400_that_names_the_parameter(self):
        start, end = self.formats()["ISO with Z"]
        cases = [
            ({"from": "yesterday", "to": end}, "'from'"),
            ({"from": start, "to": "2026-13-45T00:00"}, "'to'"),
            ({"from": "1e5"}, "'from'"),
            ({"from": end, "to": start}, "'from'"),  # from after to
            ({"from": start, "to": start}, "'from'"),  # an empty range
            ({"from": "2020-01-01T00:00Z", "to": "2021-06-01T00:00Z"}, "at most 400 days"),
        ]
        for page in PAGES:
            for params, named in cases:
                with self.subTest(page=page, params=params):
                    response = self.client.get(f"/o/alice-org/{page}", params)
                    assert response.status_code == 400
                    html = unescape(response.content.decode())
                    assert named in html and 'id="range-error"' in html
                    assert "in-the-middle" not in html  # no data from a range that was not understood
                    assert 'href="?range=24h"' in html  # the presets are offered to get out

    def test_the_outsider_still_gets_404_with_a_range(self):
        self.client.force_login(self.charlie)
        start, end = self.formats()["ISO with Z"]
        for page in PAGES:
            assert self.client.get(f"/o/alice-org/{page}", {"from": start, "to": end}).status_code == 404
            assert self.client.get(f"/o/alice-org/{page}", {"from": "bad"}).status_code == 404

    def test_presets_still_work_and_their_links_clear_from_and_to(self):
        assert self.client.get("/o/alice-org/", {"range": "24h"}).context["totals"]["count"] == 0
        week = self.client.get("/o/alice-org/", {"range": "7d"})
        assert week.context["totals"]["count"] == 6 and week.context["range"] == "7d"
        assert 'data-live-url="/ws/orgs/alice-org/live/"' in week.content.decode()
        start, end = self.formats()["ISO with Z"]
        custom = self.client.get("/o/alice-org/", {"from": start, "to": end, "range": "7d"})
        assert custom.context["totals"]["count"] == 3  # from/to win over the preset
        html = custom.content.decode()
        for key in ("1h", "24h", "7d", "30d"):
            assert f'<a href="?range={key}">' in html
        # A range that ends at a fixed time does not grow: the page does not follow the live stream.
        assert "data-live-url" not in html

    def test_the_chart_interval_follows_the_custom_range(self):
        two_hours = {"from": self.start.isoformat(), "to": (self.start + timedelta(hours=2)).isoformat()}
        ten_days = {"from": (self.end - timedelta(days=10)).isoformat(), "to": self.end.isoformat()}
        assert self.client.get("/o/alice-org/", two_hours).context["interval"] == "minute"
        assert "per minute" in self.client.get("/o/alice-org/", two_hours).content.decode()
        assert self.client.get("/o/alice-org/", ten_days).context["interval"] == "day"

    def test_links_on_the_page_carry_from_and_to(self):
        start, end = self.formats()["ISO with Z"]
        kept = f"from={start.replace(':', '%3A')}&amp;to={end.replace(':', '%3A')}"
        dashboard = self.client.get("/o/alice-org/", {"from": start, "to": end}).content.decode()
        assert f'href="/o/alice-org/requests/?{kept}" id="explore-all"' in dashboard
        assert f'<input type="hidden" name="from" value="{start}">' in dashboard  # the property picker's form

        users = self.client.get("/o/alice-org/users/", {"from": start, "to": end}).content.decode()
        assert f'href="?{kept}&amp;sort=cost"' in users  # sorting
        assert f'/o/alice-org/requests/?user_id=user-in-the-middle&amp;{kept}"' in users  # a user's requests
        assert f'<input type="hidden" name="to" value="{end}">' in users  # the search form

        sessions = self.client.get("/o/alice-org/sessions/", {"from": start, "to": end}).content.decode()
        assert f'<input type="hidden" name="from" value="{start}">' in sessions

    def test_the_explorer_pages_through_the_custom_range(self):
        make_logs(self.org, n=60)  # the last hour
        params = {"from": (timezone.now() - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "to": (timezone.now() + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        first = self.client.get("/o/alice-org/requests/", params)
        assert len(first.context["rows"]) == 50 and first.context["has_next"]
        html = unescape(first.content.decode())
        next_link = next(part for part in html.split('href="?')[1:] if "Next" in part.split("</a>")[0])
        assert f"from={params['from'].replace(':', '%3A')}" in next_link and "page=2" in next_link
        second = self.client.get("/o/alice-org/requests/?" + next_link.split('"')[0])
        assert len(second.context["rows"]) == 10
        assert not {log.model for log in second.context["rows"]} & self.inside  # three days ago: not in this range


def test_epoch_numbers_above_1e11_are_milliseconds():
    from analytics.queries import parse_instant

    moment = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
    assert parse_instant("1796565600", "from") == moment
    assert parse_instant("1796565600000", "from") == moment
    assert parse_instant("99999999999", "from").year == 5138  # just below 1e11: still seconds
