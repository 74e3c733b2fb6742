"""The sessions list's walk over the sessions' all-time rows (issue #22: every page within 300 ms at
10M logs): largest or newest first, searched by name or id, every page equal to what the raw rows
give, for sessions wholly inside the range and for those reaching past either end of it; the
all-time rows stay exact through the writer, edits, erase, purge and rebuilds."""

import io
import random
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from analytics import lifecycle, rollup_reads, rollups
from analytics.models import RequestLog, Rollup, RollupCoverage
from analytics.queries import Selection
from analytics.writer import write_batch
from tests.analytics.test_rollups import snapshot
from tests.base import BaseTestCase

SORTS = ("-count", "-cost_usd", "-errors", "-last")


def session_records(org, *, seed: int, sessions: int = 60, hours: float = 10.0, prefix: str = "s") -> list[dict]:
    """Writer records of `sessions` sessions over the last `hours`: each a few minutes to a few hours
    long (some reach past a range's ends), with ties in their counts, and named."""
    rng = random.Random(seed)
    now = time.time()
    out = []
    for s in range(sessions):
        start = now - rng.uniform(0, hours * 3600)
        length = rng.choice([60, 600, 3 * 3600])
        for _ in range(rng.choice([1, 2, 2, 3, 5, 8])):
            status = rng.choice([200] * 5 + [500])
            moment = min(start + rng.uniform(0, length), now)
            out.append({"id": str(uuid.uuid4()), "org_id": org.id, "created_at": moment,
                        "provider": "openai", "model": "gpt-4o-mini", "requested_model": "gpt-4o-mini",
                        "status": status, "latency_ms": 200.0, "prompt_tokens": 10, "completion_tokens": 5,
                        "cost_usd": rng.choice(["0.001", "0.002", "0.0005"]), "user_id": "u",
                        "session_id": f"{prefix}{s:03d}", "session_name": "Refund bot" if s % 3 else f"Trip {s:03d}"})
    return out


def rows_of(page):
    groups, has_next = page
    return [(g["key"], g["count"], g["cost"], g["errors"], g["first"], g["last"]) for g in groups], has_next


class SessionWalkTests(BaseTestCase):
    def setUp(self):
        write_batch(session_records(self.org, seed=11))

    def expected(self, selection, order: str, contains: str, names: bool) -> list[tuple]:
        """The sessions list computed here from the logs (exact decimals; SQLite's raw sums are floats
        and order ties of cost by their rounding)."""
        sessions: dict[str, list] = {}
        for log in self.org_logs().filter(created_at__gte=selection.start, created_at__lt=selection.end):
            text = (log.session_id + ("\n" + log.session_name if names else "")).lower()
            if not log.session_id or contains.lower() not in text:
                continue
            row = sessions.setdefault(log.session_id, [log.session_id, 0, Decimal(0), 0, log.created_at,
                                                       log.created_at])
            row[1] += 1
            row[2] += log.cost_usd or 0
            row[3] += rollups.is_error(log.status)
            row[4], row[5] = min(row[4], log.created_at), max(row[5], log.created_at)
        column = {"-count": 1, "-cost_usd": 2, "-errors": 3, "-last": 5}[order]
        return sorted(map(tuple, sessions.values()),
                      key=lambda row: (-row[column].timestamp() if column == 5 else -row[column], row[0]))

    def assert_pages_equal_raw(self, selection, *, contains="", names=False, limit=7, pages=4):
        for order in SORTS:
            expected = self.expected(selection, order, contains, names)
            assert expected, (order, contains)
            for page in range(pages):
                args = dict(order_by=order, offset=page * limit, limit=limit, contains=contains)
                walked = rollup_reads.people_page(selection, "session", names=names, **args)
                assert walked is not None, (order, page)
                assert rows_of(walked) == (expected[page * limit:(page + 1) * limit],
                                           len(expected) > (page + 1) * limit), (order, page, contains)

    def test_every_page_equals_the_logs_inside_and_across_the_range_ends(self):
        now = timezone.now()
        # Small reads: the walk reads again, four times more, until the page is settled.
        with mock.patch.object(rollup_reads, "_ALLTIME_CHUNK", 5):
            # Until now; and a window whose both ends cut sessions (some have logs on each side).
            self.assert_pages_equal_raw(Selection(self.org, now - timedelta(hours=24), now))
            cut = Selection(self.org, now - timedelta(hours=7, minutes=13), now - timedelta(hours=2, minutes=31))
            reaching = [key for key, first, last in self.spans()
                        if first < cut.start <= last or first < cut.end <= last]
            assert len(reaching) >= 3, "no session reaches past the window's ends"
            self.assert_pages_equal_raw(cut)
            # A search by name or by id, inside the window too.
            day = Selection(self.org, now - timedelta(hours=24), now)
            self.assert_pages_equal_raw(day, contains="TRIP", names=True)
            self.assert_pages_equal_raw(cut, contains="refund", names=True, pages=2)
            self.assert_pages_equal_raw(cut, contains="S01", names=True, pages=2)

    def test_a_search_takes_its_text_literally(self):
        now = timezone.now()
        odd = session_records(self.org, seed=14, sessions=3, prefix="odd")
        for record, session in zip(odd, ("a_b%c", "axbyc", "A\\B")):
            record.update(session_id=session, session_name="")
        write_batch(odd)
        day = Selection(self.org, now - timedelta(hours=24), timezone.now())
        for text, found in (("_B%", ["a_b%c"]), ("%", ["a_b%c"]), ("a\\b", ["A\\B"]), ("x", ["axbyc"])):
            page = rollup_reads.people_page(day, "session", order_by="-last", offset=0, limit=50, contains=text,
                                            names=True)
            assert [group["key"] for group in page[0]] == found, text
        if connection.vendor == "postgresql":  # analytics.0016: a rare text is found through its trigram index
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'rollup_alltime_search'")
                assert cursor.fetchone()

    def spans(self):
        return Rollup.objects.filter(org=self.org, grain=rollups.ALLTIME).values_list("value", "first_at", "last_at")

    def test_sessions_wholly_in_the_range_are_answered_by_their_rows_and_a_long_walk_reads_the_rest_at_once(self):
        now = timezone.now()
        selection = Selection(self.org, now - timedelta(hours=24), now)
        with mock.patch.object(rollup_reads, "_ALLTIME_CHUNK", 5), \
                mock.patch.object(rollup_reads, "_range_totals", wraps=rollup_reads._range_totals) as in_range:
            first = rollup_reads.people_page(selection, "session", order_by="-count", offset=0, limit=3)
            assert rows_of(first) == (self.expected(selection, "-count", "", False)[:3], True)
            assert not in_range.called  # 24 hours hold every session whole: their all-time rows answer
        # Past the walk's limit the rest is read at once: the same pages.
        with mock.patch.object(rollup_reads, "_ALLTIME_CHUNK", 2), \
                mock.patch.object(rollup_reads, "ALLTIME_WALK_LIMIT", 4):
            deep = rollup_reads.people_page(selection, "session", order_by="-count", offset=20, limit=7)
            assert rows_of(deep) == (self.expected(selection, "-count", "", False)[20:27], True)
            found = rollup_reads.people_page(selection, "session", order_by="-errors", offset=2, limit=7,
                                             contains="trip", names=True)
            assert rows_of(found) == (self.expected(selection, "-errors", "trip", True)[2:9], True)

    def test_until_rebuilt_an_upgraded_org_adds_up_the_range_and_searches_the_raw_rows(self):
        now = timezone.now()
        selection = Selection(self.org, now - timedelta(hours=24), now)
        expected = (self.expected(selection, "-count", "", False)[7:14], True)
        RollupCoverage.objects.filter(org=self.org).update(alltime_at=None)  # as the migration leaves it
        assert rollup_reads._alltime_page(rollup_reads.plan(selection, "session"), "session", order_by="-count",
                                          offset=7, limit=7, contains="", names=False) is None
        assert rows_of(rollup_reads.people_page(selection, "session", order_by="-count", offset=7, limit=7)) \
            == expected
        assert rollup_reads.people_page(selection, "session", order_by="-count", offset=0, limit=7,
                                        contains="trip", names=True) is None
        page = self.client_for_alice().get("/o/alice-org/sessions/", {"session": "trip", "sort": "requests"})
        assert page.status_code == 200 and page.context["sessions"]  # from the raw rows
        out = io.StringIO()
        call_command("rebuild_rollups", "--sessions", "--org", "alice-org", stdout=out)
        assert f"alice-org: {len(session_records(self.org, seed=11)):,} log(s) counted" in out.getvalue()
        with pytest.raises(CommandError, match="takes no --since"):
            call_command("rebuild_rollups", "--sessions", "--since", "2026-11-01")
        assert RollupCoverage.objects.get(org=self.org).alltime_at is not None
        assert rows_of(rollup_reads.people_page(selection, "session", order_by="-count", offset=7, limit=7,
                                                contains="", names=True)) == expected

    def client_for_alice(self):
        self.client.force_login(self.alice)
        return self.client

    def test_all_time_rows_stay_exact_through_changes_and_a_partial_rebuild(self):
        alltime = Rollup.objects.filter(org=self.org, grain=rollups.ALLTIME)
        # Older sessions, and older logs of the same sessions.
        write_batch(session_records(self.org, seed=12, hours=24 * 4, prefix="old"))
        write_batch(session_records(self.org, seed=13, hours=24 * 4))
        kept = snapshot(self.org)
        assert any(key[0] == rollups.ALLTIME for key in kept)
        rollups.rebuild(self.org.id, since=timezone.now() - timedelta(days=1))
        assert snapshot(self.org) == kept  # not counted twice
        names = dict(alltime.values_list("value", "label"))
        assert names["s000"] == "Trip 000" and names["s001"] == "Refund bot"
        # A purge takes the purged logs out; a session with none left loses its row.
        before = set(alltime.values_list("value", flat=True))
        self.org.retention_days = 1
        self.org.save()
        plan = lifecycle.purge_plan(self.org)
        gone = set(plan.logs.values_list("session_id", flat=True)) - set(
            self.org_logs().filter(created_at__gte=plan.cutoff).values_list("session_id", flat=True))
        assert gone, "no session lies wholly before the cutoff"
        lifecycle.purge(plan)
        assert set(alltime.values_list("value", flat=True)) == before - gone
        kept = snapshot(self.org)
        rollups.rebuild(self.org.id)
        assert snapshot(self.org) == kept
        # Erasing the user takes every session's logs: the list is empty.
        lifecycle.erase_user(self.org, "u", via="test", batch_size=13)
        assert not alltime.filter(requests__gt=0).exists()
        now = timezone.now()
        assert rollup_reads.people_page(Selection(self.org, now - timedelta(days=30), now), "session",
                                        order_by="-count", offset=0, limit=7) == ([], False)

    def org_logs(self):
        return RequestLog.objects.filter(org=self.org)
