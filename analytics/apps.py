from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate, post_save

        from orgs.models import Organization
        from prompts import usage

        from . import lifecycle
        from .alerts import register_listeners
        from .models import TraceSpan
        from .queries import PromptUsage

        register_listeners()
        post_save.connect(_cover_new_org, sender=Organization, dispatch_uid="rollups_cover_new_org")
        post_migrate.connect(_migrate_clickhouse, sender=self, dispatch_uid="clickhouse_migrate")
        usage.provide(_PromptUsage(PromptUsage()))
        lifecycle.register_user_eraser("trace_spans", TraceSpan.forget_user)


def _cover_new_org(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """A new org has no logs yet: its rollups are complete from the start (analytics.rollups)."""
    if created and not raw:
        from .rollups import cover_new_org

        cover_new_org(instance.pk)


def _migrate_clickhouse(sender, verbosity: int = 1, **kwargs) -> None:
    """With CLICKHOUSE_URL, `migrate` also creates ClickHouse's tables and views when missing."""
    from . import clickhouse

    if clickhouse.enabled():
        from .clickhouse import schema

        for done in schema.migrate():
            if verbosity >= 2:
                print(f"  ClickHouse: {done}")


class _PromptUsage:
    """The prompt pages' usage figures from ClickHouse when it is on, else from the SQL rows."""

    def __init__(self, sql):
        self.sql = sql

    def _source(self):
        from . import clickhouse

        if clickhouse.enabled():
            from .clickhouse.reads import PromptUsage

            return PromptUsage
        return self.sql

    def prompt_request_counts(self, org, slugs):
        return self._source().prompt_request_counts(org, slugs)

    def prompt_version_stats(self, org, slug):
        return self._source().prompt_version_stats(org, slug)
