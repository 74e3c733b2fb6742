"""The usage figures on the prompt pages: requests per prompt, and requests, cost and latency
per version.

They are read from the request logs, which live in analytics, above this app: analytics
provides them when it starts (`provide`, called by AnalyticsConfig.ready), so prompts imports
nothing of it. Without a provider the pages show no traffic.
"""

from __future__ import annotations

from typing import Any, Protocol

from orgs.models import Organization


class UsageFigures(Protocol):
    def prompt_request_counts(self, org: Organization, slugs: list[str]) -> dict[str, int]:
        """Logged requests per prompt id."""

    def prompt_version_stats(self, org: Organization, slug: str) -> dict[int | None, dict[str, Any]]:
        """Per version (None: tagged with the prompt but no stored version): a dict with `requests`,
        `cost` (USD, None when no request was priced), `latency` (mean ms) and `unpriced`."""


_figures: UsageFigures | None = None


def provide(figures: UsageFigures) -> None:
    global _figures
    _figures = figures


def request_counts(org: Organization, slugs: list[str]) -> dict[str, int]:
    return _figures.prompt_request_counts(org, slugs) if _figures is not None and slugs else {}


def version_stats(org: Organization, slug: str) -> dict[int | None, dict[str, Any]]:
    return _figures.prompt_version_stats(org, slug) if _figures is not None else {}
