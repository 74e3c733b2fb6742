"""`manage.py purge_logs`: per-org retention, in batches, with progress, audited."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from analytics.models import Feedback, RequestLog, Score
from orgs.models import AuditEvent, Organization
from tests.analytics.helpers import make_logs
from tests.base import BaseTestCase


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_logs", *args, stdout=out)
    return out.getvalue()


@override_settings(LOG_RETENTION_DAYS=None)
class PurgeLogsTests(BaseTestCase):
    def setUp(self):
        now = timezone.now()
        self.org.retention_days = 30
        self.org.save(update_fields=["retention_days"])
        self.old = make_logs(self.org, n=5, created_at=now - timedelta(days=40))
        self.recent = make_logs(self.org, n=3, seed=8, created_at=now - timedelta(days=29))
        for log in self.old[:2] + self.recent[:1]:
            Feedback.objects.create(org=self.org, request=log, rating=True)
            Score.objects.create(org=self.org, request=log, name="accuracy", value=0.5)
        # The outsider keeps logs forever (no retention of its own, no default).
        self.foreign = make_logs(self.other_org, n=4, seed=9, created_at=now - timedelta(days=400))

    def test_old_logs_and_their_children_go_in_batches_the_rest_stays(self):
        output = purge("--batch-size", "2")

        assert set(RequestLog.objects.filter(org=self.org).values_list("id", flat=True)) == {
            log.id for log in self.recent}
        assert RequestLog.objects.filter(org=self.other_org).count() == 4
        assert Feedback.objects.filter(org=self.org).count() == 1
        assert Score.objects.filter(org=self.org).count() == 1
        # 5 rows in batches of 2: three transactions, with progress after each.
        assert "alice-org: batch 1: 2 log(s) deleted so far" in output
        assert "alice-org: batch 2: 4 log(s) deleted so far" in output
        assert "alice-org: batch 3: 5 log(s) deleted so far" in output
        assert "batch 4" not in output
        assert "alice-org: deleted 5 log(s) older than 30 day(s)" in output
        assert "charlie-org: logs kept forever" in output

    def test_purge_is_audited_once_per_org_and_idempotent(self):
        purge()
        events = list(AuditEvent.objects.filter(action="logs.purge"))
        assert len(events) == 1
        assert events[0].org == self.org
        assert events[0].changes["requests"] == 5
        assert events[0].changes["feedback"] == 2 and events[0].changes["scores"] == 2
        assert events[0].changes["retention_days"] == 30

        output = purge()
        assert "alice-org: deleted 0 log(s)" in output
        assert RequestLog.objects.filter(org=self.org).count() == 3
        # Nothing purged: nothing to audit.
        assert AuditEvent.objects.filter(action="logs.purge").count() == 1

    def test_dry_run_counts_and_deletes_nothing(self):
        output = purge("--dry-run")
        assert "alice-org: would delete 5 log(s) older than 30 day(s)" in output
        assert "Done: would delete 5 log(s)." in output
        assert RequestLog.objects.count() == 12
        assert not AuditEvent.objects.filter(action="logs.purge").exists()

    def test_global_default_applies_to_orgs_without_their_own(self):
        with override_settings(LOG_RETENTION_DAYS=100):
            output = purge()
        assert RequestLog.objects.filter(org=self.other_org).count() == 0
        assert "charlie-org: deleted 4 log(s) older than 100 day(s)" in output
        # The org's own 30 days wins over the default.
        assert RequestLog.objects.filter(org=self.org).count() == 3

    def test_org_option_limits_the_purge_to_one_org(self):
        self.other_org.retention_days = 1
        self.other_org.save(update_fields=["retention_days"])
        output = purge("--org", "charlie-org")
        assert RequestLog.objects.filter(org=self.other_org).count() == 0
        assert RequestLog.objects.filter(org=self.org).count() == 8
        assert "alice-org" not in output

    def test_bad_options_name_the_problem(self):
        with pytest.raises(CommandError, match="no organization with slug 'nope'"):
            purge("--org", "nope")
        with pytest.raises(CommandError, match="--batch-size must be at least 1"):
            purge("--batch-size", "0")
        assert RequestLog.objects.count() == 12

    def test_logs_written_during_a_purge_are_not_touched(self):
        # A purge takes the cutoff once: a log inserted while it runs (now) is never older.
        new_org = Organization.objects.create(name="Busy", slug="busy", retention_days=1)
        make_logs(new_org, n=3, seed=3, created_at=timezone.now() - timedelta(days=2))
        written = []

        def progress(batch, deleted):
            written.extend(make_logs(new_org, n=1, seed=batch))

        from analytics import lifecycle

        plan = lifecycle.purge_plan(new_org)
        assert lifecycle.purge(plan, batch_size=1, progress=progress) == 3
        assert set(RequestLog.objects.filter(org=new_org).values_list("id", flat=True)) == {
            log.id for log in written}
