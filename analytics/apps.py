from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from orgs.models import Organization
        from prompts import usage

        from . import lifecycle
        from .alerts import register_listeners
        from .models import TraceSpan
        from .queries import PromptUsage

        register_listeners()
        post_save.connect(_cover_new_org, sender=Organization, dispatch_uid="rollups_cover_new_org")
        usage.provide(PromptUsage())
        lifecycle.register_user_eraser("trace_spans", TraceSpan.forget_user)


def _cover_new_org(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """A new org has no logs yet: its rollups are complete from the start (analytics.rollups)."""
    if created and not raw:
        from .rollups import cover_new_org

        cover_new_org(instance.pk)
