"""Time the analytics pages and metrics API against the current database.

    manage.py measure_analytics --org scale --runs 30

Requests go through Django's test client in this process (the whole view,
template and queries, without the network), as a member and with a read key.
Prints P50 and P95 per URL; run it after `generate_logs` to check the budget.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from urllib.parse import quote, urlencode

from django.core.management.base import BaseCommand, CommandError
from django.test import Client
from django.utils import timezone

from orgs.models import ApiKey, Membership, Organization

# What reads rows rather than aggregates.
ROWS = ("explorer 24h", "explorer 24h, model + property", "explorer 7d, slowest first", "API requests list",
        "request page", "explorer 24h, conditions OR", "request panel", "session page", "sessions 24h search",
        "explorer 7d, most output tokens", "sessions 30d search")


class Command(BaseCommand):
    help = "Measure P50/P95 of the dashboard, explorer and metrics API for an organization."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True)
        parser.add_argument("--runs", type=int, default=30)
        parser.add_argument("--aggregates", action="store_true",
                            help="Only the aggregate pages and APIs (not the explorer's and API's rows)")

    def handle(self, *args, **options):
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"No organization {options['org']!r}")
        membership = Membership.objects.filter(org=org).select_related("user").first()
        if membership is None:
            raise CommandError("The organization has no member to view the pages as")
        key, raw = ApiKey.generate(org, "measure_analytics", ["read"])
        try:
            page = Client()
            page.force_login(membership.user)
            api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
            s = org.slug
            month_ago = (timezone.now() - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
            targets = [
                ("dashboard 24h", page, f"/o/{s}/"),
                ("dashboard 7d", page, f"/o/{s}/?range=7d"),
                ("dashboard 30d", page, f"/o/{s}/?range=30d"),
                ("dashboard 1h", page, f"/o/{s}/?range=1h"),
                ("explorer 24h", page, f"/o/{s}/requests/"),
                ("explorer 24h, model + property", page,
                 f"/o/{s}/requests/?model=gpt-4o&prop_key=Feature&prop_value=chat"),
                ("explorer 7d, slowest first", page, f"/o/{s}/requests/?range=7d&sort=slowest"),
                ("explorer 7d, most output tokens", page, f"/o/{s}/requests/?range=7d&sort=tokens"),
                ("users 24h", page, f"/o/{s}/users/"),
                ("sessions 24h", page, f"/o/{s}/sessions/"),
                ("users 30d", page, f"/o/{s}/users/?range=30d"),
                ("sessions 30d", page, f"/o/{s}/sessions/?range=30d"),
                ("API summary 30d", api, f"/api/v1/metrics/summary?created_after={month_ago}"),
                ("API summary 30d group_by=user", api,
                 f"/api/v1/metrics/summary?created_after={month_ago}&group_by=user"),
                ("API summary 30d property:Feature", api,
                 f"/api/v1/metrics/summary?created_after={month_ago}&group_by=property:Feature"),
                ("API timeseries 30d day", api, f"/api/v1/metrics/timeseries?interval=day&created_after={month_ago}"),
                ("API summary (24h default)", api, "/api/v1/metrics/summary"),
                ("API summary group_by=model", api, "/api/v1/metrics/summary?group_by=model"),
                ("API timeseries hour", api, "/api/v1/metrics/timeseries?interval=hour"),
                ("API requests list", api, "/api/v1/requests?limit=50"),
            ]
            newest = api.get("/api/v1/requests?limit=1").json()["items"]
            if newest:
                targets.append(("request page", page, f"/o/{s}/requests/{newest[0]['id']}/"))
                targets.append(("request panel", page, f"/o/{s}/requests/{newest[0]['id']}/?panel=1"))
            targets += [
                ("explorer 24h, conditions OR", page,
                 f"/o/{s}/requests/?f=latency_ms:gt:2000&f=property.Feature:eq:chat&join=or"),
                ("users 30d, page 3", page, f"/o/{s}/users/?range=30d&page=3"),
                ("sessions 30d by requests, page 2", page, f"/o/{s}/sessions/?range=30d&sort=requests&page=2"),
                ("sessions 30d by cost", page, f"/o/{s}/sessions/?range=30d&sort=cost"),
                ("sessions 30d by errors", page, f"/o/{s}/sessions/?range=30d&sort=errors"),
                ("sessions 24h search", page, f"/o/{s}/sessions/?session=Agent"),
                ("sessions 30d search", page, f"/o/{s}/sessions/?range=30d&session=Agent&sort=requests"),
            ]
            top = api.get("/api/v1/metrics/summary?group_by=user").json().get("groups") or []
            if top and top[0].get("key"):
                query = urlencode({"id": top[0]["key"], "range": "30d"})
                targets.append(("user page 30d", page, f"/o/{s}/user/?{query}"))
            session = next((item.get("session_id") for item in api.get("/api/v1/requests?limit=50").json()["items"]
                            if item.get("session_id")), None)
            if session:
                targets.append(("session page", page, f"/o/{s}/sessions/{quote(session, safe='')}/"))
            if options["aggregates"]:
                targets = [target for target in targets if target[0] not in ROWS]
            self.stdout.write(f"{'URL':<36} {'P50 ms':>8} {'P95 ms':>8} {'max ms':>8}")
            for name, client, url in targets:
                client.get(url)  # warm the caches and connections
                times = []
                for _ in range(options["runs"]):
                    started = time.perf_counter()
                    response = client.get(url)
                    times.append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise CommandError(f"{url} answered {response.status_code}")
                times.sort()
                p95 = statistics.quantiles(times, n=20, method="inclusive")[-1]
                self.stdout.write(f"{name:<36} {statistics.median(times):8.1f} {p95:8.1f} {times[-1]:8.1f}")
        finally:
            key.delete()
