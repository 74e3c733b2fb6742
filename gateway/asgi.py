"""Raw ASGI entry of the proxy hot path: proxy prefixes here, the rest to Django."""

from .providers import match_prefix
from .proxy import handle


class GatewayRouter:
    def __init__(self, django_app):
        self.django_app = django_app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            prefix = match_prefix(scope["path"])
            if prefix is not None:
                return await handle(scope, receive, send, prefix)
        return await self.django_app(scope, receive, send)
