"""Alert rules: the issue's example rules fire once, resolve on recovery, and a tick claims a rule once."""

import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from analytics import alerts
from analytics.lifecycle import delete_logs_in_batches
from analytics.models import AlertEvent, AlertRule, RequestLog
from tests.base import BaseTestCase
from tests.servers import child_env

from .helpers import store


def logs(org, n, *, minutes_ago=1, **values):
    now = timezone.now()
    base = dict(org=org, provider="openai", model="gpt-4o-mini", status=200, latency_ms=100.0)
    base.update(values)
    store(
        [RequestLog(created_at=now - timedelta(minutes=minutes_ago, seconds=i % 30), **base) for i in range(n)])


def error_rate_rule(org, **extra):
    # "error rate above 10% over 5 minutes with at least 20 requests"
    values = dict(name="Errors", metric="error_rate", comparison="above", threshold=10, window_seconds=300,
                  min_requests=20)
    return AlertRule.objects.create(org=org, **{**values, **extra})


class ExampleRulesTests(BaseTestCase):
    def evaluate(self, rule):
        with self.captureOnCommitCallbacks(execute=True):
            return alerts.evaluate_rule(rule)

    def test_error_rate_fires_once_with_enough_requests_and_resolves_on_recovery(self):
        rule = error_rate_rule(self.org)
        logs(self.org, 16)
        logs(self.org, 3, status=500)
        self.assertEqual(self.evaluate(rule), ([], []))  # 19 requests: below the minimum

        logs(self.org, 1, status=502)  # 20 requests, 4 errors: 20 %
        fired, resolved = self.evaluate(rule)
        self.assertEqual(len(fired), 1)
        self.assertAlmostEqual(fired[0].value, 20.0)
        self.assertEqual(fired[0].request_count, 20)

        self.assertEqual(self.evaluate(rule), ([], []))  # still above: no second firing
        self.assertEqual(AlertEvent.objects.filter(rule=rule).count(), 1)

        logs(self.org, 30)  # 4 errors in 50: 8 %
        fired, resolved = self.evaluate(rule)
        self.assertEqual((fired, [e.pk for e in resolved]), ([], [AlertEvent.objects.get().pk]))
        event = AlertEvent.objects.get()
        self.assertIsNotNone(event.resolved_at)
        self.assertAlmostEqual(event.resolved_value, 8.0)

    def test_errors_outside_the_window_do_not_count(self):
        rule = error_rate_rule(self.org)
        logs(self.org, 30, status=500, minutes_ago=6)
        logs(self.org, 20)
        self.assertEqual(self.evaluate(rule), ([], []))

    def test_cost_above_50_dollars_per_day(self):
        rule = AlertRule.objects.create(org=self.org, name="Spend", metric="cost_usd", threshold=50,
                                        window_seconds=86400)
        logs(self.org, 4, cost_usd=Decimal("10"), minutes_ago=600)
        self.assertEqual(self.evaluate(rule), ([], []))  # $40
        logs(self.org, 2, cost_usd=Decimal("6"), minutes_ago=60)
        fired, _ = self.evaluate(rule)
        self.assertAlmostEqual(fired[0].value, 52.0)
        logs(self.other_org, 10, cost_usd=Decimal("100"))  # another org's spend is not ours
        other = AlertRule.objects.create(org=self.other_org, name="Spend", metric="cost_usd", threshold=5000,
                                         window_seconds=86400)
        self.assertEqual(self.evaluate(other), ([], []))

    def test_p95_latency_above_3000ms_over_15_minutes_for_gpt_4o(self):
        rule = AlertRule.objects.create(org=self.org, name="Slow 4o", metric="latency_p95_ms", threshold=3000,
                                        window_seconds=900, filter_field="model", filter_value="gpt-4o")
        logs(self.org, 20, model="gpt-4o-mini", latency_ms=9000.0)  # another model: ignored
        logs(self.org, 19, model="gpt-4o", latency_ms=500.0)
        self.assertEqual(self.evaluate(rule), ([], []))
        logs(self.org, 5, model="gpt-4o", latency_ms=5000.0)
        fired, _ = self.evaluate(rule)
        self.assertEqual(len(fired), 1)
        self.assertGreater(fired[0].value, 3000)

    def test_a_grouped_rule_fires_for_each_offending_user(self):
        rule = AlertRule.objects.create(org=self.org, name="Per user", metric="request_count", threshold=5,
                                        window_seconds=3600, group_by="user")
        logs(self.org, 6, user_id="heavy-1")
        logs(self.org, 7, user_id="heavy-2")
        logs(self.org, 2, user_id="light")
        fired, _ = self.evaluate(rule)
        self.assertEqual(sorted(e.group_key for e in fired), ["heavy-1", "heavy-2"])

    def test_a_property_filter_and_property_grouping(self):
        rule = AlertRule.objects.create(org=self.org, name="Feature errors", metric="error_rate", threshold=50,
                                        window_seconds=600, filter_field="property", filter_property="Env",
                                        filter_value="prod", group_by="property", group_property="Feature")
        logs(self.org, 4, status=500, properties={"Env": "prod", "Feature": "chat"})
        logs(self.org, 4, properties={"Env": "prod", "Feature": "search"})
        logs(self.org, 4, status=500, properties={"Env": "dev", "Feature": "search"})
        fired, _ = self.evaluate(rule)
        self.assertEqual([e.group_key for e in fired], ["chat"])

    def test_cooldown_keeps_a_flapping_rule_quiet(self):
        rule = error_rate_rule(self.org, cooldown_seconds=3600, min_requests=1)
        logs(self.org, 2, status=500)
        self.assertEqual(len(self.evaluate(rule)[0]), 1)
        delete_logs_in_batches(RequestLog.objects.all())  # as erase and purge delete them
        self.assertEqual(len(self.evaluate(rule)[1]), 1)
        logs(self.org, 2, status=500)
        self.assertEqual(self.evaluate(rule), ([], []))

    def test_a_rule_is_claimed_once_per_tick(self):
        rule = error_rate_rule(self.org)
        now = timezone.now()
        self.assertTrue(alerts.claim(rule.pk, now))
        self.assertFalse(alerts.claim(rule.pk, now))
        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(alerts.evaluate_due(now), 0)
            self.assertEqual(alerts.evaluate_due(now + timedelta(seconds=alerts.tick_seconds())), 1)


@pytest.mark.django_db(transaction=True)
def test_two_run_alerts_processes_fire_a_rule_once():
    from orgs.models import Organization

    org = Organization.objects.create(name="Acme", slug="acme")
    error_rate_rule(org)
    logs(org, 10)
    logs(org, 15, status=500)
    command = [sys.executable, "manage.py", "run_alerts", "--once"]
    procs = [subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert AlertEvent.objects.count() == 1
    assert sum("evaluated 1 rule" in out for out, _ in outputs) == 1, outputs
