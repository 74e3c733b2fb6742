"""Checks that features register for the organization settings whose grammar they own.

The foundation stores an org's settings but knows no feature: the gateway, which enforces
the org-wide rate-limit policy, registers the parser that validates it and gives its normal
form (GatewayConfig.ready). The org's settings page and the admin both call `clean`.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured

# A check returns the value in its normal form, or raises ValueError with a message to show.
SettingCheck = Callable[[str], str]

_checks: dict[str, SettingCheck] = {}


def register(setting: str, check: SettingCheck) -> None:
    _checks[setting] = check


def clean(setting: str, value: str) -> str:
    try:
        check = _checks[setting]
    except KeyError:
        raise ImproperlyConfigured(f"no app registered a check for the organization setting {setting!r}") from None
    return check(value)
