"""The users and sessions lists and the user page (issue #22 item 5): every user and session is
reachable page by page (no cap), sorted the same across pages, with the range, search and sort kept
in the links; the rollups, the raw rows and ClickHouse give the same pages; sessions are found by
name or id; durations read "1 h 4 min"; a user page for any id, 404 for anyone else's."""

import html
import re
from datetime import timedelta
from decimal import Decimal
from unittest import mock
from urllib.parse import parse_qs, urlsplit

from django.test import override_settings
from django.utils import timezone

from analytics.models import RequestLog, RollupCoverage
from analytics.templatetags.analytics_format import humane_duration
from analytics.writer import write_batch
from tests.analytics.helpers import store
from tests.analytics.test_rollups import records
from tests.base import BaseTestCase, ClickHouseTestCase

ODD_ID = "team/a/../b c?x=1&y=#z%2F"
USERS = 230  # more than the old cap of 200 rows


def links(page, element_id: str) -> str | None:
    found = re.search(rf'href="([^"]*)"[^>]*id="{element_id}"', page.content.decode())
    return html.unescape(found.group(1)) if found else None


def walk(client, url: str, key: str, field: str) -> tuple[list, list[str]]:
    """Every row of a list, following its Next links; and the links followed."""
    rows, followed = [], []
    page = client.get(url)
    assert page.status_code == 200, url
    while True:
        rows += [row[field] for row in page.context[key]]
        following = links(page, "page-next")
        if following is None:
            return rows, followed
        followed.append(following)
        page = client.get(urlsplit(url).path + following)
        assert page.status_code == 200, following


class UsersSessionsPagesTests(BaseTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        now = timezone.now()
        cls.now = now
        logs = []
        for i in range(USERS):
            for j in range(1 + (i % 3 == 0)):
                logs.append(RequestLog(
                    org=cls.org, provider="openai", model="gpt-4o" if i % 2 else "gpt-4o-mini",
                    status=200 if i % 7 else 500,
                    latency_ms=100 + i, prompt_tokens=10, completion_tokens=5,
                    cost_usd=Decimal(i % 17) / 1000, user_id=f"user-{i:03d}",
                    session_id=f"sess-{i % 60:02d}", session_name="Refund bot" if i % 2 else f"Trip planning {i % 60}",
                    created_at=now - timedelta(minutes=i * 5 + j * 64, seconds=i % 50)))
        # One user seen 10 days ago too (outside a 24-hour range), with properties; an odd id.
        logs += [RequestLog(org=cls.org, provider="anthropic", model="claude-3-5-haiku", status=200, latency_ms=900,
                            prompt_tokens=3, completion_tokens=2, cost_usd=Decimal("0.01"), user_id="user-003",
                            properties={"Plan": "pro", "Feature": "chat"}, created_at=now - timedelta(days=10)),
                 RequestLog(org=cls.org, provider="openai", model="gpt-4o", status=200, latency_ms=200,
                            properties={"Plan": "pro"}, user_id="user-003", created_at=now - timedelta(minutes=3)),
                 RequestLog(org=cls.org, provider="openai", model="gpt-4o", status=200, latency_ms=300,
                            user_id=ODD_ID, created_at=now - timedelta(minutes=2)),
                 RequestLog(org=cls.other_org, provider="openai", model="gpt-4o", status=200, latency_ms=300,
                            user_id="charlie-user", session_id="charlie-session", created_at=now)]
        store(logs)
        cls.logs = logs

    def setUp(self):
        self.client.force_login(self.alice)

    def expected_users(self, key):
        since = self.now - timedelta(hours=24)
        mine = [log for log in self.logs if log.org_id == self.org.pk and log.user_id and log.created_at >= since]
        users = {}
        for log in mine:
            user = users.setdefault(log.user_id, {"count": 0, "cost": Decimal(0), "last": log.created_at})
            user["count"] += 1
            user["cost"] += log.cost_usd or 0
            user["last"] = max(user["last"], log.created_at)
        if key == "last":
            return sorted(users, key=lambda user: users[user]["last"], reverse=True)
        return [user for user, _ in sorted(users.items(), key=lambda item: (-item[1][key], item[0]))]

    def test_every_user_is_reachable_page_by_page_in_one_order_with_the_sort_and_range_kept(self):
        for sort, key in (("requests", "count"), ("cost", "cost")):
            rows, followed = walk(self.client, f"/o/alice-org/users/?range=24h&sort={sort}", "users", "user_id")
            assert rows == self.expected_users(key), sort
            assert len(rows) == USERS + 1 and len(followed) == 4  # 5 pages of 50
            for link in followed:
                assert parse_qs(urlsplit(link).query)["sort"] == [sort] and "range=24h" in link
        last, _ = walk(self.client, "/o/alice-org/users/?sort=last", "users", "user_id")
        assert last == [user for user in self.expected_users("last")]
        page = self.client.get("/o/alice-org/users/", {"page": 5})
        assert [user["user_id"] for user in page.context["users"]] == self.expected_users("count")[200:]
        assert not page.context["has_next"] and "Page 5 · 201–231" in page.content.decode()
        assert links(page, "page-prev").endswith("page=4")
        # A custom range and a search travel in the links too.
        start, end = (self.now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M"), self.now.strftime("%Y-%m-%dT%H:%M:%S")
        with mock.patch("analytics.views.PEOPLE_PAGE_SIZE", 10):
            custom = self.client.get("/o/alice-org/users/",
                                     {"from": start, "to": end, "user": "USER-0", "sort": "cost"})
        query = parse_qs(urlsplit(links(custom, "page-next")).query)
        assert query["from"] == [start] and query["to"] == [end] and query["user"] == ["USER-0"]
        assert query["sort"] == ["cost"] and query["page"] == ["2"]
        assert all(user["user_id"].startswith("user-0") for user in custom.context["users"])
        sort_link = re.search(r'href="\?([^"]*sort=requests)"', custom.content.decode()).group(1)
        assert "user=USER-0" in html.unescape(sort_link) and "page=" not in sort_link

    def test_every_session_is_reachable_newest_first_and_found_by_name_or_id(self):
        rows, followed = walk(self.client, "/o/alice-org/sessions/?range=24h", "sessions", "session_id")
        sessions = {}
        for log in self.logs:
            if log.org_id == self.org.pk and log.session_id:
                sessions[log.session_id] = max(sessions.get(log.session_id, log.created_at), log.created_at)
        assert rows == sorted(sessions, key=lambda s: sessions[s], reverse=True) and len(followed) == 1
        by_requests, _ = walk(self.client, "/o/alice-org/sessions/?sort=requests", "sessions", "session_id")
        assert sorted(by_requests) == sorted(sessions)
        # By name (case-insensitive), by id; a search pages too.
        with mock.patch("analytics.views.PEOPLE_PAGE_SIZE", 7):
            named, followed = walk(self.client, "/o/alice-org/sessions/?session=refund+BOT", "sessions", "session_id")
            assert sorted(named) == sorted(f"sess-{i:02d}" for i in range(1, 60, 2)) and len(followed) == 4
            assert all("session=refund+BOT" in link for link in followed)
        by_id = self.client.get("/o/alice-org/sessions/", {"session": "SESS-1"})
        assert sorted(s["session_id"] for s in by_id.context["sessions"]) == [f"sess-1{i}" for i in range(10)]
        trip = self.client.get("/o/alice-org/sessions/", {"session": "planning 42"})
        assert [s["session_id"] for s in trip.context["sessions"]] == ["sess-42"]
        assert "Trip planning 42" in trip.content.decode()
        nothing = self.client.get("/o/alice-org/sessions/", {"session": "charlie"})
        assert nothing.context["sessions"] == [] and "No session name or id contains" in nothing.content.decode()

    def test_the_raw_rows_page_like_the_rollups(self):
        pages = {}
        for covered in (True, False):
            if not covered:
                RollupCoverage.objects.filter(org=self.org).delete()
            for url, key, field in (("/o/alice-org/users/?sort=cost&page=2", "users", "user_id"),
                                    ("/o/alice-org/users/?sort=errors", "users", "user_id"),
                                    ("/o/alice-org/users/?sort=last&page=2&user=user-1", "users", "user_id"),
                                    ("/o/alice-org/sessions/?sort=requests", "sessions", "session_id"),
                                    ("/o/alice-org/sessions/?page=2", "sessions", "session_id")):
                page = self.client.get(url)
                pages.setdefault(url, []).append(([(row[field], row["requests"], row["cost"], row["errors"],
                                                    row["last"]) for row in page.context[key]],
                                                  page.context["has_next"]))
        for url, (rollups, raw) in pages.items():
            assert rollups == raw and rollups[0], url

    def test_a_session_id_no_path_can_carry_links_to_its_requests(self):
        store([RequestLog(org=self.org, provider="openai", model="gpt-4o", status=200, session_id="line\nbreak",
                          created_at=timezone.now())])
        page = self.client.get("/o/alice-org/sessions/", {"session": "line"})
        assert page.status_code == 200
        assert page.context["sessions"][0]["href"] == "/o/alice-org/requests/?session_id=line%0Abreak&range=24h"

    def test_a_page_or_sort_that_cannot_be_read_is_a_400_naming_it(self):
        for url, named in (("/o/alice-org/users/?page=0", "page"), ("/o/alice-org/users/?page=two", "page"),
                           ("/o/alice-org/users/?page=%C2%B2", "page"),
                           ("/o/alice-org/sessions/?page=-1", "page"), ("/o/alice-org/users/?sort=name", "sort"),
                           ("/o/alice-org/sessions/?sort=cheapest", "sort")):
            page = self.client.get(url)
            assert page.status_code == 400, url
            assert re.search(rf'id="list-error">{named} must be', page.content.decode()), url
        past = self.client.get("/o/alice-org/users/", {"page": 9})
        assert past.status_code == 200 and "No more users on page 9." in past.content.decode()

    def test_sessions_show_humanised_durations(self):
        assert [humane_duration(v) for v in (None, 0, 0.35, 3.24, 45.4, 65, 3840, 3600, 90061)] == [
            "–", "0 s", "350 ms", "3.2 s", "45 s", "1 min 5 s", "1 h 4 min", "1 h", "1 d 1 h"]
        assert humane_duration(timedelta(hours=1, minutes=4)) == "1 h 4 min"
        # sess-03: from user-183's first request (979 min 33 s ago) to user-003's last (15 min 3 s ago).
        page = self.client.get("/o/alice-org/sessions/", {"session": "sess-03"})
        assert page.context["sessions"][0]["duration"] == 964 * 60 + 30
        assert re.search(r'<td class="num nowrap"[^>]*>16 h 4 min</td>', page.content.decode())

    def test_the_user_page_has_the_ranges_figures_their_first_and_last_seen_models_and_properties(self):
        users = self.client.get("/o/alice-org/users/", {"user": "user-003", "range": "24h"})
        link = re.search(r'href="(/o/alice-org/user/\?[^"]*)" class="user-link"', users.content.decode()).group(1)
        page = self.client.get(html.unescape(link))
        assert page.status_code == 200 and page.context["user_id"] == "user-003"
        mine = [log for log in self.logs if log.user_id == "user-003" and log.org_id == self.org.pk]
        in_range = [log for log in mine if log.created_at >= self.now - timedelta(hours=24)]
        assert page.context["totals"]["count"] == len(in_range) == 3
        assert page.context["first_seen"] == min(log.created_at for log in mine)  # ever, not in the range
        assert page.context["last_seen"] == max(log.created_at for log in mine)
        assert [(item["label"], item["text"]) for item in page.context["models"]] == [("gpt-4o", "3")]
        body = page.content.decode()
        assert body.count("<svg") >= 3  # requests, cost and latency over time
        assert 'id="active-for">9 d 23 h <' in body
        assert page.context["properties"] == [{"key": "Plan", "values": [("pro", 1)], "more": 0}]
        explorer = html.unescape(re.search(r'href="([^"]*)" id="user-explorer"', body).group(1))
        assert parse_qs(urlsplit(explorer).query) == {"user_id": ["user-003"], "range": ["24h"]}
        assert self.client.get(explorer).context["rows"][0].user_id == "user-003"
        week = self.client.get("/o/alice-org/user/", {"id": "user-003", "range": "30d"})
        assert week.context["totals"]["count"] == 4 and len(week.context["models"]) == 2
        assert week.context["properties"][0] == {"key": "Feature", "values": [("chat", 1)], "more": 0}
        assert 'href="?id=user-003&amp;range=7d"' in week.content.decode()  # the range picker keeps the user

    def test_any_user_id_has_a_page_linked_from_the_list(self):
        users = self.client.get("/o/alice-org/users/", {"user": "team/"})
        link = re.search(r'href="(/o/alice-org/user/\?[^"]*)" class="user-link"', users.content.decode()).group(1)
        page = self.client.get(html.unescape(link))
        assert page.status_code == 200 and page.context["user_id"] == ODD_ID
        assert html.escape(ODD_ID) in page.content.decode()

    def test_a_user_of_no_log_here_is_404_and_a_missing_id_400(self):
        assert self.client.get("/o/alice-org/user/", {"id": "nobody"}).status_code == 404
        assert self.client.get("/o/alice-org/user/", {"id": "charlie-user"}).status_code == 404  # charlie-org's
        missing = self.client.get("/o/alice-org/user/")
        assert missing.status_code == 400 and 'id="user-error">id: which user?' in missing.content.decode()
        self.client.force_login(self.charlie)
        assert self.client.get("/o/alice-org/user/", {"id": "user-003"}).status_code == 404
        assert self.client.get("/o/alice-org/users/").status_code == 404
        assert self.client.get("/o/charlie-org/user/", {"id": "user-003"}).status_code == 404
        assert self.client.get("/o/charlie-org/user/", {"id": "charlie-user"}).status_code == 200
        self.client.force_login(self.bob)  # a member
        assert self.client.get("/o/alice-org/user/", {"id": "user-003"}).status_code == 200


def sql_answers(fn):
    with override_settings(CLICKHOUSE_URL=""):
        return fn()


class ClickHousePagesTests(ClickHouseTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        batch = records(cls.org, 600, seed=81, hours=24 * 3, users=40)
        for i, record in enumerate(batch):
            if record["session_id"]:
                record["session_id"] = f"s-{i % 23:02d}"
                record["session_name"] = "Refund bot" if i % 23 % 2 else f"Trip {i % 23}"
        write_batch(batch)
        write_batch(records(cls.other_org, 50, seed=82, users=3))

    def test_the_lists_and_the_user_page_read_clickhouse_like_the_sql_rows(self):
        self.client.force_login(self.alice)
        with mock.patch("analytics.views.PEOPLE_PAGE_SIZE", 7):
            for url in ("/o/alice-org/users/?range=7d", "/o/alice-org/users/?range=7d&sort=cost&page=3",
                        "/o/alice-org/users/?range=24h&sort=last&page=2", "/o/alice-org/users/?sort=errors&user=USER-1",
                        "/o/alice-org/sessions/?range=7d", "/o/alice-org/sessions/?range=7d&sort=requests&page=2",
                        "/o/alice-org/sessions/?range=7d&session=refund",
                        "/o/alice-org/sessions/?range=7d&session=TRIP&page=2",
                        "/o/alice-org/sessions/?range=24h&session=s-1&sort=cost"):
                ours = self.client.get(url)
                theirs = sql_answers(lambda: self.client.get(url))
                assert ours.status_code == theirs.status_code == 200, url
                key = "users" if "users" in ours.context else "sessions"
                assert ours.context[key] == theirs.context[key] and ours.context[key], url
                assert ours.context["has_next"] == theirs.context["has_next"], url
            walked, _ = walk(self.client, "/o/alice-org/users/?range=7d&sort=cost", "users", "user_id")
            assert len(walked) == len(set(walked)) == 40
        for query in ({"id": "user-2", "range": "7d"}, {"id": "user-2", "range": "1h"}, {"id": "user-39"}):
            ours = self.client.get("/o/alice-org/user/", query)
            theirs = sql_answers(lambda: self.client.get("/o/alice-org/user/", query))
            assert ours.status_code == theirs.status_code == 200, query
            for name in ("first_seen", "last_seen", "models", "properties", "sampled"):
                assert ours.context[name] == theirs.context[name], (query, name)
            for name, value in theirs.context["totals"].items():
                if not name.startswith("latency"):
                    assert ours.context["totals"][name] == value, (query, name)
        assert self.client.get("/o/alice-org/user/", {"id": "nobody"}).status_code == 404
