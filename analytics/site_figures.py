"""Site-wide figures for operators (the admin's figures page) and the models traffic uses unpriced.

Both read request logs through the (org, …) indexes: every log index leads with
the org, so the queries ask for every org (`org_id IN (SELECT id FROM orgs)`),
which PostgreSQL runs as one index scan per org instead of a scan of the table.
The figures are one grouped pass over a bounded window, cached for a minute.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from urllib.parse import urlencode

from django.core.cache import cache
from django.db.models import Count, Max, Sum
from django.utils import timezone

from orgs.models import Organization

from . import charts, clickhouse, rollups
from .metrics import ERROR_Q, INTERVALS, _as_utc, _floor
from .models import RequestLog, Rollup
from .rollup_reads import INTERVAL_GRAINS

# Window -> (span, bucket). Each is one grouped query of (bucket, org) rows.
WINDOWS = {
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "day"),
    "30d": (timedelta(days=30), "day"),
}
DEFAULT_WINDOW = "24h"
CACHE_SECONDS = 60
TOP_ORGS = 10


def every_org(slug: str = ""):
    """The orgs' ids as a subquery: `org_id IN (SELECT id FROM orgs)` is planned as one index-only scan
    of the covering (org, created_at) index per org, never a scan of the table's rows."""
    orgs = Organization.objects.all()
    if slug:
        orgs = orgs.filter(slug=slug)
    return orgs.values("pk")


@dataclass
class Figures:
    window: str
    start: datetime
    end: datetime
    times: list[datetime] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    active_orgs: list[int] = field(default_factory=list)
    top_by_volume: list[tuple[str, float]] = field(default_factory=list)
    top_by_cost: list[tuple[str, float]] = field(default_factory=list)
    totals: dict = field(default_factory=dict)

    def charts(self) -> dict:
        """The figures page's charts (charts.figure: SVG, and uPlot's data with its hover crosshair);
        each top org opens the page for that org alone."""
        error_rate = [100 * e / n if n else None for n, e in zip(self.requests, self.errors)]
        ok = [n - e for n, e in zip(self.requests, self.errors)]
        step = INTERVALS[WINDOWS[self.window][1]][1]

        def for_org(slug: str) -> str:
            return "?" + urlencode({"window": self.window, "org": slug})

        return {
            "requests": charts.figure("columns", self.times, [("successful", ok), ("errors", self.errors)],
                                      step=step, label="Requests over time", colors=["#4f46e5", "#ef4444"]),
            "cost": charts.figure("lines", self.times, [("cost", self.cost)], charts.usd, step=step, area=True,
                                  label="Cost over time"),
            "error_rate": charts.figure("lines", self.times, [("error rate", error_rate)], charts.percent,
                                        step=step, label="Error rate over time"),
            "active_orgs": charts.figure("lines", self.times, [("active orgs", self.active_orgs)], step=step,
                                         label="Active organizations over time"),
            "top_by_volume": charts.bars(self.top_by_volume, links=[for_org(slug) for slug, _ in self.top_by_volume]),
            "top_by_cost": charts.bars(self.top_by_cost, charts.usd,
                                       links=[for_org(slug) for slug, _ in self.top_by_cost]),
        }


def cache_key(window: str, slug: str) -> str:
    return f"hc:admin-figures:{window}:{slug}"


def site_figures(window: str = DEFAULT_WINDOW, slug: str = "") -> Figures:
    """Requests, errors, cost and active orgs per bucket, and the top orgs, over `window`."""
    window = window if window in WINDOWS else DEFAULT_WINDOW
    key = cache_key(window, slug)
    figures = cache.get(key)
    if figures is None:
        figures = _compute(window, slug)
        cache.set(key, figures, CACHE_SECONDS)
    return figures


def _compute(window: str, slug: str) -> Figures:
    span, interval = WINDOWS[window]
    trunc, step = INTERVALS[interval]
    end = timezone.now()
    start = _floor(end - span, interval) + step  # whole buckets: the first one is the current one, a span ago
    orgs = list(every_org(slug).values_list("pk", flat=True))
    if clickhouse.enabled():
        from .clickhouse import reads

        return _figures(window, start, end, step, reads.site_rows(orgs, start, interval))
    covered = rollups.covered_orgs(orgs, start)
    # The orgs' rollups (the all-logs rows of the chart's grain); the raw rows of orgs not built yet.
    rows = list(
        Rollup.objects.filter(org_id__in=covered, dim="", grain=INTERVAL_GRAINS[interval][0],
                              bucket__gte=start)
        .values("bucket", "org_id").annotate(n=Sum("requests"), errors=Sum("errors"), cost=Sum("cost_usd"))
        .order_by()
    )
    rows += list(
        RequestLog.objects.filter(org_id__in=[pk for pk in orgs if pk not in covered], created_at__gte=start)
        .annotate(bucket=trunc("created_at", tzinfo=dt_timezone.utc))
        .values("bucket", "org_id")
        .annotate(n=Count("id"), errors=Count("id", filter=ERROR_Q), cost=Sum("cost_usd"))
        .order_by()
    )
    return _figures(window, start, end, step, rows)


def _figures(window: str, start: datetime, end: datetime, step: timedelta, rows: list[dict]) -> Figures:
    figures = Figures(window=window, start=start, end=end)
    per_bucket: dict[datetime, list] = defaultdict(lambda: [0, 0, Decimal(0), 0])
    per_org: dict[int, list] = defaultdict(lambda: [0, Decimal(0)])
    for row in rows:
        bucket = per_bucket[_as_utc(row["bucket"])]
        cost = row["cost"] or Decimal(0)
        bucket[0] += row["n"]
        bucket[1] += row["errors"]
        bucket[2] += cost
        bucket[3] += 1
        per_org[row["org_id"]][0] += row["n"]
        per_org[row["org_id"]][1] += cost
    moment = start
    while moment <= end:
        n, errors, cost, orgs = per_bucket.get(moment, (0, 0, Decimal(0), 0))
        figures.times.append(moment)
        figures.requests.append(n)
        figures.errors.append(errors)
        figures.cost.append(float(cost))
        figures.active_orgs.append(orgs)
        moment += step
    slugs = dict(Organization.objects.filter(pk__in=per_org).values_list("pk", "slug"))
    by_volume = sorted(per_org.items(), key=lambda item: -item[1][0])[:TOP_ORGS]
    by_cost = sorted((item for item in per_org.items() if item[1][1] > 0), key=lambda item: -item[1][1])[:TOP_ORGS]
    figures.top_by_volume = [(slugs.get(pk, str(pk)), n) for pk, (n, _cost) in by_volume]
    figures.top_by_cost = [(slugs.get(pk, str(pk)), float(cost)) for pk, (_n, cost) in by_cost]
    total = sum(figures.requests)
    errors = sum(figures.errors)
    figures.totals = {"requests": total, "errors": errors, "error_rate": errors / total if total else 0.0,
                      "cost": sum(figures.cost), "active_orgs": len(per_org)}
    return figures


@dataclass
class Unpriced:
    provider: str
    model: str
    requests: int
    last_seen: datetime


def unpriced_models(days: int = 30) -> list[Unpriced]:
    """Models that answered with token counts in the last `days` but have no cost, and still
    have no price (an operator's ModelPrice or genai-prices' data), most used first."""
    from .pricing import UNPRICED, cost_usd, refresh_overrides

    since = timezone.now() - timedelta(days=days)
    if clickhouse.enabled():
        from .clickhouse import reads

        rows = reads.unpriced_models(list(every_org().values_list("pk", flat=True)), since)
    else:
        rows = (
        # cost_usd IS NULL within each org is a range of the (org, -cost_usd) index.
            RequestLog.objects.filter(UNPRICED, org_id__in=every_org(), created_at__gte=since)
            .exclude(model="")
            .values("provider", "model")
            .annotate(requests=Count("id"), last_seen=Max("created_at"))
            .order_by("-requests")[:500]
        )
    refresh_overrides()
    found = []
    for row in rows:
        if cost_usd(row["provider"], row["model"], 1000, 1000) is None:
            found.append(Unpriced(row["provider"], row["model"], row["requests"], _as_utc(row["last_seen"])))
    return found

