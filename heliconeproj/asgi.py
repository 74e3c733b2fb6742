"""ASGI entry point: the gateway's proxy routes, Django for everything else,
and Channels for WebSockets.

Proxy paths (/oai/, /anthropic/, /gateway/, the named providers) go straight to
the gateway's own ASGI handler: Django's request handling (signals and sync
middleware, each a thread hop) would cost more than our whole latency budget.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heliconeproj.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from analytics.routing import websocket_application, websocket_urlpatterns  # noqa: E402
from gateway.asgi import GatewayRouter  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": GatewayRouter(django_asgi_app),
        # Origin checked for browsers, then the session, then the consumer's membership or key check.
        "websocket": websocket_application(URLRouter(websocket_urlpatterns)),
    }
)
