"""What the analytics commands share: which organizations `--org` selects, and a progress bar."""

import sys
import time
from collections.abc import Callable

from django.core.management.base import CommandError

from orgs.models import Organization


def selected_orgs(slug: str | None):
    """Every organization by slug, or only the one `--org` names (a CommandError if none has it)."""
    orgs = Organization.objects.order_by("slug")
    if slug is not None:
        orgs = orgs.filter(slug=slug)
        if not orgs.exists():
            raise CommandError(f"no organization with slug {slug!r}")
    return orgs


def progress_bar(label: str = "", unit: str = "rows") -> Callable[[int, int], None]:
    """progress(done, total) redraws one line on stderr: the bar, the rate and the time left."""
    started = time.monotonic()
    prefix = f"{label}: " if label else ""

    def progress(done: int, total: int) -> None:
        width = 40
        filled = int(width * min(done, total) / total) if total else width
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed else 0
        eta = max(total - done, 0) / rate if rate else 0
        sys.stderr.write(f"\r{prefix}[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} "
                         f"{rate:,.0f} {unit}/s, {eta:,.0f}s left ")
        sys.stderr.flush()

    return progress
