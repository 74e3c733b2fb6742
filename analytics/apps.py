from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self) -> None:
        from prompts import usage

        from . import lifecycle
        from .alerts import register_listeners
        from .models import TraceSpan
        from .queries import PromptUsage

        register_listeners()
        usage.provide(PromptUsage())
        lifecycle.register_user_eraser("trace_spans", TraceSpan.forget_user)
