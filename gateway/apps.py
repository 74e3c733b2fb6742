from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"

    def ready(self) -> None:
        # The apps below the gateway learn what they must ask or tell it without importing it: the
        # org-wide rate-limit policy is checked with its parser, a prompt change empties its prompt
        # cache, an end user's erase deletes their rate-limit counters.
        from analytics import lifecycle
        from formats.headers import policy_text
        from orgs import checks
        from prompts import actions as prompt_actions

        from . import prompts, ratelimit

        checks.register("rate_limit_policy", policy_text)
        prompt_actions.on_change(prompts.forget)
        lifecycle.register_user_eraser("rate_limit_counters", ratelimit.forget_user)
