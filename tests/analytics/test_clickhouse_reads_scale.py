"""The ClickHouse reads rewritten for 100M logs (issue #18): they answer exactly what the SQL rows
answer, against a real ClickHouse server (chdb-core).

- The explorer in a value order (slowest, fastest, costliest, most output tokens) reads the page's
  keys without FINAL, then the page's logs by key: the same logs in the same order as SQL, ties and
  logs without a value included, on every page, with a log stored twice by a race shown once.
- A user's first and last request, and a session's logs, are read in the hours the rollups give
  them: logs outside the page's range and days apart are found, deleted ones are not.
"""

from datetime import timedelta
from urllib.parse import urlencode

from django.test import override_settings
from django.utils import timezone

from analytics import rollup_reads
from analytics.clickhouse import client, rows, store
from analytics.models import RequestLog
from analytics.queries import Selection
from analytics.writer import write_batch
from tests.analytics.test_rollups import records
from tests.base import ClickHouseTestCase

# The explorer's value orders, and the column each sorts by.
VALUE_ORDERS = {"slowest": "-latency_ms", "fastest": "latency_ms", "costliest": "-cost_usd",
                "tokens": "-completion_tokens"}


def sql_answers(fn):
    """What the SQL database's rows answer (ClickHouse off)."""
    with override_settings(CLICKHOUSE_URL=""):
        return fn()


def expected(org, order: str, **filters) -> list:
    """The ids of the org's logs in the explorer's order, from SQL: values descending or ascending,
    logs without one last, then the id's text descending."""
    column = order.lstrip("-")
    logs = list(RequestLog.objects.filter(org=org, **filters).values_list("id", column))
    by_id = sorted(logs, key=lambda log: str(log[0]), reverse=True)
    valued = sorted([log for log in by_id if log[1] is not None], key=lambda log: log[1],
                    reverse=order.startswith("-"))  # stable: ties keep the id order
    return [log[0] for log in valued] + [log[0] for log in by_id if log[1] is None]


def store_again(logs: list[RequestLog], token: str) -> None:
    """Insert the logs into ClickHouse once more, as a race of two writers would (another block
    token, so the server does not drop it)."""
    client().raw_insert("request_logs", store.COLUMNS, insert_block=store._rows(logs), fmt="JSONEachRow",
                        settings={**store.INSERT_SETTINGS, "insert_deduplication_token": token})


class ExplorerValueOrderTests(ClickHouseTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        batch = records(cls.org, 260, seed=71, hours=20, users=6)
        for i, record in enumerate(batch):
            if i % 5 == 0:  # ties on every column, across pages
                record.update(latency_ms=500.0, cost_usd="0.0025", completion_tokens=100, status=200)
            if i % 17 == 0:  # logs without a value, last in either direction
                record.update(latency_ms=None)
        write_batch(batch)
        write_batch(records(cls.other_org, 40, seed=72, hours=20))  # never on alice-org's pages
        # Logs outside the explorer's 24 hours: never on its pages.
        earlier = records(cls.org, 30, seed=73, hours=24)
        for record in earlier:
            record["created_at"] -= 3 * 86400
        write_batch(earlier)

    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def test_every_value_order_pages_like_the_sql_rows(self):
        for sort in VALUE_ORDERS:
            for page in (1, 2, 3, 6, 7):  # 260 logs in the range: page 6 is the last, 7 is empty
                url = f"/o/alice-org/requests/?range=24h&sort={sort}&page={page}"
                ours = self.client.get(url)
                theirs = sql_answers(lambda: self.client.get(url))
                assert ours.status_code == theirs.status_code == 200, url
                assert [log.id for log in ours.context["rows"]] == [log.id for log in theirs.context["rows"]], url
                assert ours.context["has_next"] == theirs.context["has_next"], url
                if page == 1:
                    assert len(ours.context["rows"]) == 50, url
            # Filtered, and errors only.
            for query in ("model=gpt-4o", "status=error", "user_id=user-2&prop_key=Feature&prop_value=chat"):
                url = f"/o/alice-org/requests/?range=24h&sort={sort}&{query}"
                ours = self.client.get(url)
                theirs = sql_answers(lambda: self.client.get(url))
                assert [log.id for log in ours.context["rows"]] == [log.id for log in theirs.context["rows"]], url

    def test_any_offset_and_length_reads_the_keys_then_the_logs(self):
        for order in VALUE_ORDERS.values():
            want = expected(self.org, order)
            for offset, limit in ((0, 1), (0, 51), (37, 13), (49, 2), (245, 50), (289, 10), (400, 5)):
                page = rows.page(Selection(self.org), order=order, offset=offset, limit=limit)
                assert [log.id for log in page] == want[offset:offset + limit], (order, offset, limit)
            # Without falling back to sorting the range's logs with FINAL.
            q, where = rows._where(Selection(self.org), False)
            column = order.lstrip("-")
            ordering = f"{column} {'DESC' if order.startswith('-') else 'ASC'} NULLS LAST, toUInt128(id) DESC"
            found = rows._by_value(q, where, column, ordering, 40, 20)
            assert [log.id for log in found] == want[40:60], order

    def test_the_logs_come_without_their_bodies_and_with_their_columns(self):
        page = rows.page(Selection(self.org), order="-completion_tokens", limit=5)
        for log in page:
            stored = RequestLog.objects.get(id=log.id)
            assert (log.model, log.status, log.user_id, log.properties, log.created_at) == (
                stored.model, stored.status, stored.user_id, stored.properties, stored.created_at)
            assert "request_body" not in log.__dict__


class ExplorerLogStoredTwiceTests(ClickHouseTestCase):
    """A log inserted twice by a race of two writers is one row for FINAL until a merge collapses it;
    merges are stopped here so that both copies stay."""

    clickhouse_empty_each_test = True

    def setUp(self):
        super().setUp()
        client().command("SYSTEM STOP MERGES request_logs")
        self.addCleanup(client().command, "SYSTEM START MERGES request_logs")
        batch = records(self.org, 80, seed=81, hours=10)
        for i, record in enumerate(batch):
            if i % 4 == 0:
                record.update(latency_ms=700.0, cost_usd="0.001", completion_tokens=10, status=200)
        write_batch(batch)

    def stored_rows(self) -> int:
        return client().query("SELECT count() FROM request_logs WHERE org_id = {o:UInt64}",
                              parameters={"o": self.org.id}).result_rows[0][0]

    def test_a_log_stored_twice_is_shown_once_in_every_order(self):
        for order in VALUE_ORDERS.values():
            top = expected(self.org, order)
            store_again(list(RequestLog.objects.filter(id__in=top[:15])), f"again-{order}")
        assert self.stored_rows() > 80
        for order in VALUE_ORDERS.values():
            want = expected(self.org, order)
            for offset, limit in ((0, 20), (10, 21), (60, 30)):
                page = rows.page(Selection(self.org), order=order, offset=offset, limit=limit)
                assert [log.id for log in page] == want[offset:offset + limit], (order, offset, limit)

    def test_more_copies_than_spare_keys_still_give_the_exact_page(self):
        top = expected(self.org, "-latency_ms")
        for copy in range(3):  # the first page's logs three times more: 60 copies, beyond the spare keys
            store_again(list(RequestLog.objects.filter(id__in=top[:20])), f"copy-{copy}")
        page = rows.page(Selection(self.org), order="-latency_ms", limit=20)
        assert [log.id for log in page] == top[:20]
        page = rows.page(Selection(self.org), order="-latency_ms", offset=15, limit=10)
        assert [log.id for log in page] == top[15:25]

    def test_a_copy_with_another_value_is_ordered_by_the_copy_final_keeps(self):
        # The later copy of the slowest log says it took 1 ms: FINAL keeps the later one, so the
        # log moves to the end of "slowest first" (SQL's row is changed the same way).
        slowest = RequestLog.objects.get(id=expected(self.org, "-latency_ms")[0])
        slowest.latency_ms = 1.0
        store_again([slowest], "changed")
        RequestLog.objects.filter(id=slowest.id).update(latency_ms=1.0)
        want = expected(self.org, "-latency_ms")
        assert want[-1] == slowest.id or RequestLog.objects.filter(org=self.org, latency_ms__isnull=True).exists()
        for offset, limit in ((0, 10), (70, 10)):
            page = rows.page(Selection(self.org), order="-latency_ms", offset=offset, limit=limit)
            assert [log.id for log in page] == want[offset:offset + limit], (offset, limit)


DAY = 86400


def spread(batch: list[dict], days_back: float) -> list[dict]:
    """The records moved `days_back` days into the past."""
    for record in batch:
        record["created_at"] -= days_back * DAY
    return batch


class UserAndSessionPagesTests(ClickHouseTestCase):
    """The user page's first and last request, and the session page's logs, from the hours the
    rollups give (the first and last day, then hour, with requests), not a scan of the table."""

    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        write_batch(records(cls.org, 300, seed=91, hours=20, users=5))
        # user-1 and session "long" also 40 and 12 days ago: outside a 30-day page, first seen then.
        write_batch(spread(records(cls.org, 20, seed=92, hours=3, user_id="user-1", session_id="long"), 40))
        write_batch(spread(records(cls.org, 15, seed=93, hours=3, user_id="user-1", session_id="long"), 12))
        write_batch(records(cls.org, 10, seed=94, hours=2, user_id="user-1", session_id="long"))
        # Another org's logs under the same names: never seen from alice-org.
        write_batch(spread(records(cls.other_org, 20, seed=95, user_id="user-1", session_id="long"), 60))
        write_batch(records(cls.other_org, 5, seed=96, user_id="only-theirs", session_id="theirs"))

    def setUp(self):
        super().setUp()
        self.client.force_login(self.alice)

    def sql_seen(self, user_id: str):
        return sql_answers(lambda: rollup_reads.user_seen(self.org.id, user_id))

    def test_first_and_last_seen_equal_the_sql_rows(self):
        for user_id in ("user-0", "user-1", "user-4", ""):
            assert rollup_reads.user_seen(self.org.id, user_id) == self.sql_seen(user_id), user_id
        first, _ = rollup_reads.user_seen(self.org.id, "user-1")
        assert timezone.now() - first > timedelta(days=40)
        assert rollup_reads.user_seen(self.org.id, "only-theirs") is None
        assert rollup_reads.user_seen(self.org.id, "nobody") is None

    def test_the_user_page_equals_the_sql_rows(self):
        for user_id in ("user-1", "user-3"):
            url = "/o/alice-org/user/?" + urlencode({"id": user_id, "range": "30d"})
            ours = self.client.get(url)
            theirs = sql_answers(lambda: self.client.get(url))
            assert ours.status_code == theirs.status_code == 200, user_id
            for name in ("first_seen", "last_seen", "properties", "sampled"):
                assert ours.context[name] == theirs.context[name], (user_id, name)
            assert ours.context["models"] == theirs.context["models"], user_id
        assert self.client.get("/o/alice-org/user/?id=only-theirs").status_code == 404

    def test_the_session_page_reads_every_day_of_a_long_session(self):
        url = "/o/alice-org/sessions/long/"
        ours = self.client.get(url)
        theirs = sql_answers(lambda: self.client.get(url))
        assert ours.status_code == theirs.status_code == 200
        assert [item["log"].id for item in ours.context["timeline"]] == [
            item["log"].id for item in theirs.context["timeline"]]
        assert len(ours.context["timeline"]) == 45  # 40 days ago, 12 days ago and today
        assert ours.context["totals"] == theirs.context["totals"]
        # The first logs of a session, oldest first, as many as asked.
        oldest = list(RequestLog.objects.filter(org=self.org, session_id="long").order_by("created_at", "id"))
        assert [log.id for log in rows.session_logs(self.org, "long", limit=7)] == [log.id for log in oldest[:7]]
        assert self.client.get("/o/alice-org/sessions/theirs/").status_code == 404
        assert rows.session_logs(self.org, "no-such-session") == []


class ErasedEdgesTests(ClickHouseTestCase):
    """Logs deleted at either end of a user's or session's history: their hours add up to no
    request in the rollups, so the first and last seen move to the logs left."""

    clickhouse_empty_each_test = True

    def test_deleted_first_and_last_logs_are_not_seen(self):
        from analytics.clickhouse import changes

        write_batch(spread(records(self.org, 5, seed=101, hours=2, user_id="u", session_id="s"), 20))
        write_batch(spread(records(self.org, 5, seed=102, hours=2, user_id="u", session_id="s"), 10))
        write_batch(spread(records(self.org, 5, seed=103, hours=2, user_id="u", session_id="s"), 2))
        logs = list(RequestLog.objects.filter(org=self.org, user_id="u").order_by("created_at"))
        gone = [log.id for log in logs[:5] + logs[-5:]]  # the whole first and last days
        changes.delete(self.org.id, gone)
        RequestLog.objects.filter(id__in=gone).delete()
        assert rollup_reads.user_seen(self.org.id, "u") == (logs[5].created_at, logs[9].created_at)
        assert [log.id for log in rows.session_logs(self.org, "s")] == [log.id for log in logs[5:10]]
        changes.delete(self.org.id, [log.id for log in logs[5:10]])
        assert rollup_reads.user_seen(self.org.id, "u") is None
        assert rows.session_logs(self.org, "s") == []
