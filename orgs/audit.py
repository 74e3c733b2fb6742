"""Writing audit events. Every state change calls `record` (inside its transaction)."""

from typing import Any

from django.db import models

from .models import ApiKey, AuditEvent, Organization


def client_ip(request) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(
    action: str,
    *,
    request=None,
    org: Organization | None = None,
    user=None,
    api_key: ApiKey | None = None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. The actor defaults to the request's user."""
    if user is None and request is not None and getattr(request, "user", None) is not None:
        if request.user.is_authenticated:
            user = request.user
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
    label = ""
    if user is not None:
        label = user.email
    elif api_key is not None:
        label = f"api key {api_key.masked}"
    return AuditEvent.objects.create(
        org=org,
        actor_user=user,
        actor_api_key=api_key,
        actor_label=label,
        action=action,
        target_type=target_type,
        target_id=target_id,
        changes=changes or {},
        ip=client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "")[:300] if request is not None else ""),
    )
