"""WebSocket routes, mounted by heliconeproj/asgi.py."""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from .consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/orgs/<slug:slug>/live/", LiveConsumer.as_asgi()),
]


class BrowserOriginValidator:
    """Origin checks for browsers, which always send Origin; programs send none.

    A browser's connection must come from one of ALLOWED_HOSTS (so another site
    cannot ride the user's session cookie); a connection without Origin is a
    program and may only authenticate with an API key (the consumer checks).
    """

    def __init__(self, app):
        self.app = app
        self.validated = AllowedHostsOriginValidator(app)

    async def __call__(self, scope, receive, send):
        browser = any(name.lower() == b"origin" for name, _ in scope.get("headers", []))
        scope = {**scope, "browser": browser}
        if browser:
            return await self.validated(scope, receive, send)
        return await self.app(scope, receive, send)


def websocket_application(url_router):
    return BrowserOriginValidator(AuthMiddlewareStack(url_router))
