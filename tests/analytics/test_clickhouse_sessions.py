"""The sessions list on ClickHouse walks the sessions' all-time rows (`session_totals`, one row per
session kept by a view, analytics.clickhouse.sessions), against a real ClickHouse server: every
page, order, offset and search equals what the SQL store's walk gives (dual write keeps both),
for sessions wholly inside the range and for those reaching past either end; erase, purge and
edits keep the rows exact, a retried insert is counted once, another org's sessions are never
shown, and migrate fills the table once on a database that already has logs."""

import contextlib
import time
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from analytics import actions, lifecycle, rollup_reads, rollups
from analytics.clickhouse import changes, client, reads, schema, sessions, store
from analytics.models import RequestLog
from analytics.queries import Selection
from analytics.writer import build_log, write_batch
from tests.analytics.test_sessions_alltime import SORTS, rows_of, session_records
from tests.base import ClickHouseTestCase


def sql_answers(fn):
    """What the SQL store answers (ClickHouse off): its own walk over the all-time rows."""
    with override_settings(CLICKHOUSE_URL=""):
        return fn()


def page(selection, order_by, offset=0, limit=7, contains="", names=False):
    return rollup_reads.people_page(selection, "session", order_by=order_by, offset=offset, limit=limit,
                                    contains=contains, names=names)


def small_walks(size: int):
    """Walks that read `size` sessions first (a search's and a list's), four times more each time."""
    stack = contextlib.ExitStack()
    for name, value in (("CHUNK", size), ("LIST_CHUNK", size), ("LIST_AHEAD", 0)):
        stack.enter_context(mock.patch.object(sessions, name, value))
    return stack


def log_record(org, session: str, moment: float) -> dict:
    """One writer record of a session at a moment (seconds since the epoch)."""
    return {"id": str(uuid.uuid4()), "org_id": org.id, "created_at": moment, "provider": "openai",
            "model": "gpt-4o-mini", "requested_model": "gpt-4o-mini", "status": 200, "latency_ms": 100.0,
            "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": "0.001", "user_id": "u",
            "session_id": session, "session_name": "Batch job"}


def totals() -> dict:
    """session_totals as the reads add it up: (org, session) -> requests, cost, errors, name."""
    return {(org, session): rest for org, session, *rest in client().query(
        "SELECT org_id, session_id, sum(requests), sum(cost_usd), sum(errors), max(name) FROM session_totals "
        "GROUP BY org_id, session_id HAVING sum(requests) != 0").result_rows}


class SessionsCase(ClickHouseTestCase):
    def assert_pages_equal_sql(self, selection, *, contains="", names=False, limit=7, pages=4, sorts=SORTS):
        """Every page in every order equals the SQL walk's, read from session_totals (never by adding
        up the range's sessions from the rollups, nor from the raw rows for a search)."""
        for order in sorts:
            for number in range(pages):
                args = dict(offset=number * limit, limit=limit, contains=contains, names=names)
                with mock.patch.object(reads, "grouped", side_effect=AssertionError("summed the range")), \
                        mock.patch.object(reads, "search_sessions", side_effect=AssertionError("raw search")):
                    ours = page(selection, order, **args)
                theirs = sql_answers(lambda: page(selection, order, **args))
                assert ours == theirs, (order, number, contains)
            assert rows_of(sql_answers(lambda: page(selection, order, limit=1, contains=contains, names=names)))[0], \
                (order, contains)  # something to compare

    def edit(self, log, **new):
        """An edit as analytics.ingest makes it with a SQL copy: the SQL row and rollups, then ClickHouse."""
        with transaction.atomic():
            log = RequestLog.objects.select_for_update().only(*rollups.LOG_FIELDS).get(pk=log.pk)
            rollups.subtract([log])
            RequestLog.objects.filter(pk=log.pk).update(**new)
            for name, value in new.items():
                setattr(log, name, value)
            rollups.add([log])
            changes.update(self.org.id, log.id, new)


class WalkTests(SessionsCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        write_batch(session_records(cls.org, seed=11))
        # Another org with sessions of the same ids (other counts) and some of its own.
        write_batch(session_records(cls.other_org, seed=12, sessions=30))
        write_batch(session_records(cls.other_org, seed=13, sessions=5, prefix="theirs"))

    def test_every_order_and_page_equals_sql_inside_and_across_the_range_ends(self):
        now = timezone.now()
        spans = [(g["key"], g["first"], g["last"]) for g in sql_answers(
            lambda: page(Selection(self.org, now - timedelta(days=2), now), "-last", limit=100))[0]]
        # Small reads: the walk reads again, four times more, until the page is settled (ties included:
        # counts of 1 to 8, three prices).
        with small_walks(5):
            self.assert_pages_equal_sql(Selection(self.org, now - timedelta(hours=24), now))
            cut = Selection(self.org, now - timedelta(hours=7, minutes=13), now - timedelta(hours=2, minutes=31))
            assert len([key for key, first, last in spans if first < cut.start <= last]) >= 2
            assert len([key for key, first, last in spans if first < cut.end <= last]) >= 2
            self.assert_pages_equal_sql(cut)
            self.assert_pages_equal_sql(Selection(self.org, now - timedelta(days=30), None), pages=10)
        # Past the walk's limit the rest is read at once: the same pages.
        with small_walks(2), mock.patch.object(sessions, "WALK_LIMIT", 4):
            self.assert_pages_equal_sql(cut, pages=2)

    def test_a_session_wholly_in_the_range_is_answered_by_its_row(self):
        now = timezone.now()
        with mock.patch.object(sessions, "_in_range", wraps=sessions._in_range) as in_range:
            found = page(Selection(self.org, now - timedelta(hours=24), now), "-count", limit=3)
        assert len(found[0]) == 3 and found[1]
        assert not in_range.called  # 24 hours hold every session whole

    def test_a_search_matches_the_id_or_the_name_ignoring_case(self):
        now = timezone.now()
        day = Selection(self.org, now - timedelta(hours=24), now)
        cut = Selection(self.org, now - timedelta(hours=7, minutes=13), now - timedelta(hours=2, minutes=31))
        with small_walks(5):
            self.assert_pages_equal_sql(day, contains="TRIP", names=True)
            self.assert_pages_equal_sql(cut, contains="refund", names=True, pages=2)
            self.assert_pages_equal_sql(day, contains="S01", names=True, pages=2)
            self.assert_pages_equal_sql(day, contains="s02", pages=1)  # the id alone
        assert page(day, "-count", contains="Refund", names=False) == ([], False)
        assert page(day, "-count", contains="nothing like it", names=True) == ([], False)

    def test_another_orgs_sessions_are_never_shown(self):
        now = timezone.now()
        day = Selection(self.org, now - timedelta(hours=24), now)
        self.assert_pages_equal_sql(day, sorts=("-count",), pages=9)  # s000.. of both orgs: alice's counts only
        assert page(day, "-count", contains="theirs", names=True) == ([], False)
        theirs = page(Selection(self.other_org, now - timedelta(hours=24), now), "-count", limit=100,
                      contains="theirs")
        assert len(theirs[0]) == 5
        self.client.force_login(self.charlie)
        assert self.client.get("/o/alice-org/sessions/?range=30d&sort=requests").status_code == 404

    def test_the_sessions_page_lists_what_sql_lists(self):
        self.client.force_login(self.alice)
        for query in ("range=30d&sort=requests&page=2", "range=24h&sort=cost", "range=7d&sort=errors",
                      "range=24h&sort=last", "range=30d&session=trip&sort=requests"):
            url = f"/o/alice-org/sessions/?{query}"
            with mock.patch.object(reads, "grouped", side_effect=AssertionError("summed the range")), \
                    mock.patch.object(reads, "search_sessions", side_effect=AssertionError("raw search")):
                ours = self.client.get(url)
            theirs = sql_answers(lambda: self.client.get(url))
            assert ours.status_code == theirs.status_code == 200, url
            assert ours.context["sessions"] == theirs.context["sessions"] != [], url
            assert ours.context["has_next"] == theirs.context["has_next"], url

    def test_what_the_walk_cannot_answer_is_read_as_before(self):
        now = timezone.now()
        day = Selection(self.org, now - timedelta(hours=24), now)
        assert sessions.page(Selection(self.org, day.start, day.end, {"user_id": "u"}), order_by="-count",
                             offset=0, limit=7) is None  # no all-time row keeps a second dimension
        assert sessions.page(day, order_by="count", offset=0, limit=7) is None  # smallest first: no bound
        found = page(Selection(self.org, day.start, day.end, {"user_id": "u"}), "-count", limit=7)
        assert found == page(day, "-count", limit=7)  # every log here is u's: the rollups say the same


class StopTests(SessionsCase):
    def test_sessions_mostly_before_the_range_do_not_hide_those_in_it(self):
        """Long sessions come first by their all-time counts but have one request in the range; the
        walk reads on until the page's last sorts ahead of every session not read."""
        now = time.time()
        batch = []
        for s in range(6):
            for minutes in [*range(600, 609), 30]:  # nine requests ten hours ago, one in the last hour
                batch.append(log_record(self.org, f"long{s}", now - minutes * 60))
        for s in range(6):
            for n in range(2 + s % 3):
                batch.append(log_record(self.org, f"short{s}", now - 1800 - n * 60))
        write_batch(batch)
        write_batch(session_records(self.org, seed=14, hours=24 * 3, prefix="old"))  # none in the hour
        now = timezone.now()
        hour = Selection(self.org, now - timedelta(hours=1), now)
        with small_walks(5):
            self.assert_pages_equal_sql(hour, limit=3, pages=3, sorts=("-count", "-errors", "-cost_usd"))
        assert [g["key"] for g in page(hour, "-count", limit=3)[0]] == ["short2", "short5", "short1"]


class BoundTests(SessionsCase):
    clickhouse_empty_each_test = True  # (and the SQL copy is rolled back: both start empty)

    def test_the_walk_reads_only_sessions_with_rows_in_the_range_and_stays_exact(self):
        """Each insert is a row of session_totals until merges add them up: a session's rows before
        the range are left out of its bound (big sessions of the morning do not come first in the
        last hour), sessions with nothing in the range are never read, and logs erased before the
        range or in it leave every page equal to the SQL walk's."""
        client().command("SYSTEM STOP MERGES session_totals")  # (merges would add a session's rows up)
        self.addCleanup(client().command, "SYSTEM START MERGES session_totals")
        now = time.time()
        for s in range(5):  # big sessions of the morning, each continued by a request in the last hour
            write_batch([{**log_record(self.org, f"morning{s}", now - 6 * 3600 - n * 60),
                          "user_id": "early" if n < 3 else "u"} for n in range(20)])
        for s in range(5):
            write_batch([{**log_record(self.org, f"morning{s}", now - 600 - s), "user_id": "late" if s == 3 else "u"}])
        write_batch([log_record(self.org, f"hour{s}", now - 900 - n * 30) for s in range(6) for n in range(1 + s % 4)])
        write_batch([log_record(self.org, f"old{s}", now - 86400 - s * 600 - n)  # none in the last hour
                     for s in range(40) for n in range(s % 7)])
        assert len(client().query("SELECT 1 FROM session_totals WHERE session_id = 'morning1'").result_rows) == 2
        current = timezone.now()
        hour = Selection(self.org, current - timedelta(hours=1), current)
        with mock.patch.object(sessions, "_rows", wraps=sessions._rows) as read_whole, \
                small_walks(4):
            self.assert_pages_equal_sql(hour, limit=3, pages=4)
        read = {key for call in read_whole.call_args_list for key in call.args[1]}
        assert read and not {key for key in read if key.startswith("old")}  # never read: nothing in the hour
        start, end = reads._bounds(hour)
        walked = sessions._walk(self.org.id, start, end, "requests", "", False, None)
        assert {row["k"] for row in walked} == {*(f"morning{s}" for s in range(5)), *(f"hour{s}" for s in range(6))}
        assert {row["t_requests"] for row in walked if row["k"].startswith("morning")} == {1}  # the hour's row
        assert [g["key"] for g in page(hour, "-count", limit=2)[0]] == ["hour3", "hour2"]
        # Erased: logs of the morning (before the range), and the hour's only request of morning3.
        client().command("SYSTEM START MERGES session_totals")  # (an erase waits for its deletes)
        lifecycle.erase_user(self.org, "early", via="test")
        lifecycle.erase_user(self.org, "late", via="test")
        with small_walks(4):
            self.assert_pages_equal_sql(hour, limit=3, pages=4)
        assert "morning3" not in {g["key"] for g in page(hour, "-count", limit=50)[0]}

    def test_a_moved_last_request_reads_as_the_whole_range_reads_it(self):
        """A session reaching past the range's start whose last request moved to another session:
        its totals in the range are read on whole hours, as the whole range reads them, so the list
        newest first equals what the rollups gave before session_totals (the hour keeps the moved
        log's moment as its last: changes.py)."""
        now = time.time()
        write_batch([log_record(self.org, "s-edge", now - hours * 3600) for hours in (25, 23.2, 22.5)])
        write_batch([log_record(self.org, "s-late", now - 600)])
        moved = RequestLog.objects.filter(org=self.org, session_id="s-edge").order_by("-created_at")[0]
        self.edit(moved, session_id="s-moved", session_name="Late context")
        current = timezone.now()
        day = Selection(self.org, current - timedelta(hours=24), current)
        with mock.patch.object(sessions, "page", return_value=None):
            before = page(day, "-last", limit=10)
        assert page(day, "-last", limit=10) == before
        assert [g["key"] for g in before[0]] == ["s-late", "s-edge", "s-moved"]  # (a tie, by id)
        assert before[0][1]["last"] == before[0][2]["last"]  # the moved log's moment, in both

    def test_a_name_given_before_the_range_is_found_by_a_search_in_it(self):
        """A session named by its first requests (hours ago) and continued without the name is found
        by its name in the last hour, as the SQL walk finds it."""
        now = time.time()
        write_batch([log_record(self.org, "bot-7", now - 5 * 3600)])  # named "Batch job"
        write_batch([{**log_record(self.org, "bot-7", now - 300), "session_name": ""}])
        write_batch([{**log_record(self.org, "bot-8", now - 200), "session_name": ""}])
        current = timezone.now()
        hour = Selection(self.org, current - timedelta(hours=1), current)
        found = page(hour, "-count", contains="batch JOB", names=True)
        assert [g["key"] for g in found[0]] == ["bot-7"]
        self.assert_pages_equal_sql(hour, contains="batch job", names=True, pages=1)


class TieTests(SessionsCase):
    def test_a_tie_with_the_last_row_walked_is_settled_by_the_ids(self):
        """Two long sessions come first but tie in the hour with the short ones after them: the page
        of five needs b1, the first session not walked, ahead of y-long."""
        now = time.time()
        batch = []
        for session in ("y-long", "z-long"):
            batch += [log_record(self.org, session, now - minutes * 60) for minutes in [*range(600, 608), 20, 10]]
        for session in ("a1", "a2", "a3", "a4", "b1"):
            batch += [log_record(self.org, session, now - minutes * 60) for minutes in (30, 15)]
        write_batch(batch)
        now = timezone.now()
        hour = Selection(self.org, now - timedelta(hours=1), now)
        with small_walks(6):
            assert [g["key"] for g in page(hour, "-count", limit=5)[0]] == ["a1", "a2", "a3", "a4", "b1"]
            self.assert_pages_equal_sql(hour, limit=5, pages=2, sorts=("-count",))


class ChangesTests(SessionsCase):
    """Erase, purge and edits: the pages still equal the SQL walk's in counts, cost and errors (a
    session's first and last request cannot be taken back in ClickHouse: changes.py)."""

    def setUp(self):
        super().setUp()
        batch = session_records(self.org, seed=21, hours=24 * 4)
        for i, record in enumerate(batch):
            record["user_id"] = f"u{i % 3}"
        # A session across the 24 hours' start: two users in them, a third before.
        for hours, user in ((25, "u1"), (23, "u2"), (22, "u0")):
            batch.append({**log_record(self.org, "s-across", time.time() - hours * 3600), "user_id": user})
        write_batch(batch)

    def assert_same_measures(self, selection, contains="", names=False):
        """Largest first, the pages' counts, cost and errors equal the SQL walk's; newest first, the
        sessions and figures equal what the rollups gave before session_totals, a first and last
        request never narrower (SQL counts the span again)."""
        for number in range(3):
            args = dict(offset=number * 7, limit=7, contains=contains, names=names)
            for order in ("-count", "-cost_usd", "-errors") + (("-last",) if names else ()):
                ours, more = page(selection, order, **args)
                theirs, their_more = sql_answers(lambda: page(selection, order, **args))
                measures = ("key", "count", "cost", "errors", "total_tokens")
                assert [[g[m] for m in measures] for g in ours] == [[g[m] for m in measures] for g in theirs], \
                    (order, number)
                assert more == their_more
        if not names:  # (before, a search by name read the raw rows)
            with mock.patch.object(sessions, "page", return_value=None):
                before, before_more = page(selection, "-last", limit=100)
            ours, more = page(selection, "-last", limit=100)
            # The same sessions with the same figures. A session's first or last request may be an
            # erased or moved log's moment in session_totals, which keeps them for all time (min and
            # max cannot be taken back: changes.py), where the raw minutes the rollups' reading
            # takes at the range's start have the logs' own: never narrower, and newest first by it.
            theirs = {g["key"]: g for g in before}
            assert sorted(theirs) == sorted(g["key"] for g in ours) and more == before_more
            for g in ours:
                assert {**g, "first": None, "last": None} == {**theirs[g["key"]], "first": None, "last": None}
                assert g["first"] <= theirs[g["key"]]["first"] and g["last"] >= theirs[g["key"]]["last"]
            assert ours == sorted(ours, key=lambda g: (-g["last"].timestamp(), g["key"]))

    def test_erase_purge_and_edits_keep_the_walk_exact(self):
        now = timezone.now()
        month = Selection(self.org, now - timedelta(days=30), now)
        day = Selection(self.org, now - timedelta(hours=24), now)
        lifecycle.erase_user(self.org, "u1", via="test")
        self.assert_same_measures(month)
        self.assert_same_measures(day)
        # A log moved to another session (OpenTelemetry context arriving late), named anew.
        moved = RequestLog.objects.filter(org=self.org, created_at__gte=day.start).order_by("id")[:3]
        for log in moved:
            self.edit(log, session_id="s-moved", session_name="Late context")
        self.assert_same_measures(day)
        self.assert_same_measures(day, contains="late CONTEXT", names=True)
        assert page(day, "-count", contains="late", names=True)[0][0]["count"] == 3
        # The list's names and users, from the sessions' logs.
        self.client.force_login(self.alice)
        for query in ("range=7d&sort=requests", "range=30d&sort=cost&page=2", "range=24h&sort=requests",
                      "range=24h&session=late"):
            ours = self.client.get(f"/o/alice-org/sessions/?{query}").context["sessions"]
            theirs = sql_answers(lambda: self.client.get(f"/o/alice-org/sessions/?{query}").context["sessions"])
            facts = ("session_id", "requests", "name", "users")
            assert [[s[f] for f in facts] for s in ours] == [[s[f] for f in facts] for s in theirs] != [], query
        # A property edit leaves the sessions as they were.
        before = totals()
        actions.set_property(self.org, moved[0].id, "Feature", "chat")
        assert totals() == before
        # A purge: sessions lose their older logs, some all of them.
        self.org.retention_days = 2
        self.org.save()
        assert lifecycle.purge(lifecycle.purge_plan(self.org)) > 0
        self.assert_same_measures(month)
        self.assert_same_measures(Selection(self.org, now - timedelta(days=2, hours=3), now - timedelta(hours=30)))
        # Erasing everyone: nothing is left to list.
        for user in ("u0", "u2"):
            lifecycle.erase_user(self.org, user, via="test")
        assert page(month, "-count") == ([], False)

class ErasedNameTests(SessionsCase):
    clickhouse_only = True
    clickhouse_empty_each_test = True

    def test_a_session_whose_every_log_is_erased_leaves_no_name_behind(self):
        """An erase takes out what the user sent: a session left with no log loses its row in
        session_totals, name and all; one that others' logs keep stays, counted without the erased."""
        now = time.time()
        alone = [{**log_record(self.org, "s-ana", now - 60 * i), "user_id": "ana", "session_name": "Ana in Rome"}
                 for i in range(3)]
        shared = [{**log_record(self.org, "s-shared", now - 30 - 60 * i), "user_id": user,
                   "session_name": "Team trip"} for i, user in enumerate(("ana", "bo", "bo"))]
        moving = [{**log_record(self.org, "s-moving", now - 90), "session_name": "Draft plan"}]
        write_batch(alone + shared + moving)
        names = lambda: {session: name for (org, session), (_, _, _, name) in totals().items()  # noqa: E731
                         if org == self.org.id}
        assert names() == {"s-ana": "Ana in Rome", "s-shared": "Team trip", "s-moving": "Draft plan"}
        lifecycle.erase_user(self.org, "ana", via="test")
        changes.update(self.org.id, moving[0]["id"], {"session_id": "s-final", "session_name": "Final plan"})
        assert names() == {"s-shared": "Team trip", "s-final": "Final plan"}
        stored = client().query("SELECT session_id, name FROM session_totals FINAL WHERE org_id = {o:UInt64}",
                                parameters={"o": self.org.id}).result_rows
        assert sorted(stored) == [("s-final", "Final plan"), ("s-shared", "Team trip")]
        month = Selection(self.org, timezone.now() - timedelta(days=30), timezone.now())
        assert page(month, "-count", contains="rome", names=True) == ([], False)
        assert [(g["key"], g["count"]) for g in page(month, "-count")[0]] == [("s-shared", 2), ("s-final", 1)]


class RetryTests(SessionsCase):
    clickhouse_only = True

    def test_an_insert_retried_with_its_token_is_counted_once(self):
        logs = [build_log(record) for record in session_records(self.org, seed=31, sessions=20)]
        rows = store._rows(logs)
        for _ in range(2):  # the same insert twice, as a retry after a lost answer sends it
            client().raw_insert("request_logs", store.COLUMNS, insert_block=rows, fmt="JSONEachRow",
                                settings={**store.INSERT_SETTINGS, "insert_deduplication_token": "retry-1"})
        counts: dict[str, int] = {}
        for log in logs:
            counts[log.session_id] = counts.get(log.session_id, 0) + 1
        assert {session: n for (org, session), (n, *_) in totals().items() if org == self.org.id} == counts
        now = timezone.now()
        found = page(Selection(self.org, now - timedelta(hours=24), now), "-count", limit=50)[0]
        assert {group["key"]: group["count"] for group in found} == counts


class FillTests(SessionsCase):
    """A database from before session_totals (logs, no table): migrate counts its logs once."""

    def make_old(self) -> None:
        for name in ("session_feed_mv", "session_totals_mv", "session_feed", "session_totals"):
            client().command(f"DROP TABLE IF EXISTS {name}")

    def assert_whole(self):
        now = timezone.now()
        month = Selection(self.org, now - timedelta(days=30), now)
        self.assert_pages_equal_sql(month, sorts=("-count", "-last"), pages=3)
        self.assert_pages_equal_sql(month, contains="trip", names=True, sorts=("-cost_usd",), pages=1)
        expected = {}
        for log in RequestLog.objects.exclude(session_id=""):
            expected[(log.org_id, log.session_id)] = expected.get((log.org_id, log.session_id), 0) + 1
        assert {key: n for key, (n, *_) in totals().items() if key[0]} == expected

    def test_migrate_fills_the_table_once_and_counts_what_the_writers_insert_meanwhile(self):
        write_batch(session_records(self.org, seed=41, hours=24 * 3))
        self.make_old()
        write_batch(session_records(self.org, seed=42, hours=24 * 3))  # no view counts these: the fill does
        write_batch(session_records(self.other_org, seed=43))
        now = timezone.now()
        month = Selection(self.org, now - timedelta(days=30), now)
        # A fill that stops before its rows reach session_totals counts nothing: the next one counts all.
        real_command = client().command

        def crash_at_attach(sql, *args, **kwargs):
            if "ATTACH PARTITION" in sql:
                raise RuntimeError("the machine went down")
            return real_command(sql, *args, **kwargs)

        with mock.patch.object(client(), "command", crash_at_attach), pytest.raises(RuntimeError):
            schema.migrate()
        write_batch(session_records(self.org, seed=45, sessions=5, prefix="after-crash"))  # the views count it
        assert sessions.page(month, order_by="-count", offset=0, limit=7) is None  # not filled: read as before
        assert page(month, "-count") == sql_answers(lambda: page(month, "-count"))
        # Logs written while migrate runs: once the feed's views exist they count them, the fill does not.
        real_wait, written = schema._inserts_ended, []

        def writers_meanwhile():
            real_wait()
            written.append(f"w{len(written)}-")
            write_batch(session_records(self.org, seed=50 + len(written), sessions=8, prefix=written[-1]))

        with mock.patch.object(schema, "_inserts_ended", writers_meanwhile):
            assert "session_totals filled from request_logs" in schema.migrate()
        assert written == ["w0-", "w1-"]
        self.assert_whole()
        # Again: nothing more to count; the logs written since are the views'.
        kept = totals()
        assert "session_totals filled from request_logs" not in schema.migrate()
        assert totals() == kept
        write_batch(session_records(self.org, seed=47, sessions=4, prefix="later"))
        self.assert_whole()
        tables = {row[0] for row in client().query("SHOW TABLES").result_rows}
        assert not tables & {"session_totals_seen", "session_totals_seen_mv", "session_totals_fill"}

