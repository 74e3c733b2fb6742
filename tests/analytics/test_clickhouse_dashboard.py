"""The dashboard with ClickHouse (issue #18) reads its tiles, charts and top lists in a few queries
(metrics.summary_and_timeseries and metrics.grouped_many): what it shows equals what the SQL store
shows for the same logs, over 30 days and shorter ranges (percentiles within 1 %)."""

from datetime import timedelta
from unittest import mock

from django.test import override_settings
from django.utils import timezone

from analytics import metrics
from analytics.queries import Selection
from analytics.writer import write_batch
from tests.analytics.test_rollups import close, records
from tests.base import ClickHouseTestCase


class DashboardFiguresTests(ClickHouseTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        logs = records(cls.org, 2400, seed=41, hours=24 * 31, users=30)
        for n, record in enumerate(logs[:240]):  # semantic hits, and shadow candidates in several bands
            if n % 2:
                record.update(cache_hit=True, status=200, cache_match="semantic", similarity=0.97)
            else:
                record.update(cache_match="shadow", similarity=(0.8, 0.86, 0.91, 0.94, 0.99)[n % 5])
        write_batch(logs + records(cls.org, 12, seed=43, hours=0.5))  # the newest ten are in the last hour
        write_batch(records(cls.other_org, 150, seed=42, hours=24 * 3))

    def page(self, query: str):
        self.client.force_login(self.alice)
        response = self.client.get("/o/alice-org/" + query)
        assert response.status_code == 200
        return response.context

    def assert_same_page(self, query: str) -> None:
        ours = self.page(query)
        with override_settings(CLICKHOUSE_URL=""):  # the SQL copy of the same logs
            theirs = self.page(query)
        assert ours["totals"]["count"] > 0
        assert ours["totals"].keys() == theirs["totals"].keys()
        for name, value in theirs["totals"].items():
            close(ours["totals"][name], value, name)
        for chart in ("requests_chart", "cost_chart", "errors_chart", "latency_chart"):
            a, b = ours[chart]["spec"], theirs[chart]["spec"]
            assert a["times"] == b["times"], chart
            for line_a, line_b in zip(a["series"], b["series"], strict=True):
                name = "latency_ms" if chart == "latency_chart" else line_b["label"]
                for x, y in zip(line_a["values"], line_b["values"], strict=True):
                    close(x, y, name)
        for top in ("cost_by_model", "top_users", "top_values"):
            assert [(row["label"], row["href"]) for row in ours[top]] == \
                [(row["label"], row["href"]) for row in theirs[top]], top
            for a, b in zip(ours[top], theirs[top]):
                close(a["value"], b["value"], top)
        assert ours["property_key"] == theirs["property_key"] == "Feature"
        for name, value in theirs["cache_split"].items():
            if name != "shadow":
                close(ours["cache_split"][name], value, name)
        assert len(ours["cache_split"]["shadow"]) == len(theirs["cache_split"]["shadow"])
        for a, b in zip(ours["cache_split"]["shadow"], theirs["cache_split"]["shadow"]):
            assert a["threshold"] == b["threshold"] and a["requests"] == b["requests"]
            close(a["saved_usd"], b["saved_usd"], "saved_usd")
        assert [log.id for log in ours["recent"]] == [log.id for log in theirs["recent"]]

    def test_the_30_day_dashboard_shows_what_the_sql_store_shows(self):
        ours = self.page("?range=30d")
        assert 2000 < ours["totals"]["count"] < 2412  # the logs of the 31st day back are out of the range
        assert ours["cache_split"]["semantic_hits"] > 0 and ours["cache_split"]["shadow"]
        assert len(ours["top_users"]) == 8  # of 30 users: the list is cut, ties ordered by name as in SQL
        self.assert_same_page("?range=30d")

    def test_shorter_ranges_and_another_property_show_what_the_sql_store_shows(self):
        two_days_ago = (timezone.now() - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        ended = f"?from={(timezone.now() - timedelta(days=9)).strftime('%Y-%m-%dT%H:%M:%SZ')}&to={two_days_ago}"
        # A range that ended two days ago: fewer than ten logs in its last hour.
        for query in ("?range=7d", "?range=24h", "?range=1h", ended, "?range=7d&property=Plan"):
            if query.endswith("Plan"):
                ours = self.page(query)
                with override_settings(CLICKHOUSE_URL=""):
                    theirs = self.page(query)
                assert [row["label"] for row in ours["top_values"]] == [row["label"] for row in theirs["top_values"]]
                assert [row["value"] for row in ours["top_values"]] == [row["value"] for row in theirs["top_values"]]
                continue
            self.assert_same_page(query)

    def test_the_30_day_dashboard_reads_clickhouse_in_four_queries(self):
        from clickhouse_connect.driver.httpclient import HttpClient

        with mock.patch.object(HttpClient, "query", autospec=True, side_effect=HttpClient.query) as query:
            self.page("?range=30d")
        # The pickers, the totals with the charts, the top lists, the newest logs.
        assert query.call_count == 4

    def test_grouped_many_answers_as_grouped_and_distinct_count_do(self):
        now = timezone.now()
        groupings = [metrics.Grouping("model", order_by="-cost_usd", limit=3),
                     metrics.Grouping("user", exclude_empty=True, limit=5, count_values=True),
                     metrics.Grouping("property:Plan", order_by="-errors"),
                     metrics.Grouping("provider", order_by="group_key", count_values=True)]
        for selection in (Selection(self.org, now - timedelta(days=30), now),
                          Selection(self.org, now - timedelta(hours=5), now, {"model": "gpt-4o"})):
            answers = metrics.grouped_many(selection, groupings)
            for grouping, (rows, count) in zip(groupings, answers, strict=True):
                with override_settings(CLICKHOUSE_URL=""):
                    theirs = metrics.grouped(selection.qs, grouping.group_by, order_by=grouping.order_by,
                                             limit=grouping.limit, exclude_empty=grouping.exclude_empty,
                                             with_percentiles=False)
                    values = metrics.distinct_count(selection, grouping.group_by) if grouping.count_values else None
                assert [str(row["key"]) for row in rows] == [str(row["key"]) for row in theirs], grouping
                for a, b in zip(rows, theirs):
                    for name, value in b.items():
                        if name != "key":
                            close(a[name], value, name)
                assert count == values, grouping
