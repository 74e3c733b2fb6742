from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self) -> None:
        from prompts import usage

        from .alerts import register_listeners
        from .queries import PromptUsage

        register_listeners()
        usage.provide(PromptUsage())
