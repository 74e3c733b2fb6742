"""The live stream: `/ws/orgs/<slug>/live/` sends each logged request of the org as it is written.

A browser is let in on its session when the user is a member (and has passed
2FA where the org requires it); a program on `Authorization: Bearer <key>` of
the org with the `read` scope. The group is joined only after that check;
anyone else is refused at the handshake (403), whether the org exists or not.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from orgs.models import ApiKey, Membership

from . import live


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


@database_sync_to_async
def authorize(scope, slug: str) -> int | None:
    """The org id this connection may follow, or None."""
    authorization = _header(scope, b"authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        key = ApiKey.find_active(token.strip())
        if key is None or not key.has_scope("read") or key.org.slug != slug:
            return None
        return key.org_id
    if not scope.get("browser"):
        return None  # programs authenticate with a key; cookies are for browsers, checked by Origin
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None
    membership = Membership.objects.select_related("org").filter(user=user, org__slug=slug).first()
    if membership is None:
        return None
    if membership.org.require_2fa and not _session_verified(scope, user):
        return None
    return membership.org_id


def _session_verified(scope, user) -> bool:
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.models import Device

    session = scope.get("session")
    persistent_id = session.get(DEVICE_ID_SESSION_KEY) if session is not None else None
    if not persistent_id:
        return False
    device = Device.from_persistent_id(persistent_id)
    return device is not None and device.user_id == user.id


class LiveConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        org_id = await authorize(self.scope, self.scope["url_route"]["kwargs"]["slug"])
        if org_id is None:
            await self.close()
            return
        live.remember_loop()
        self.group = live.group_name(org_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        pass  # a one-way stream

    async def requests_logged(self, event) -> None:
        for item in event["requests"]:
            await self.send_json({"type": "request", **item})

    async def alert_fired(self, event) -> None:
        await self.send_json({"type": "alert", **event["alert"]})
