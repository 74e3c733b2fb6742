"""ASGI entry point: the gateway's proxy routes, Django for everything else,
and Channels for WebSockets.

Proxy paths (/oai/, /anthropic/, /gateway/, the named providers) go straight to
the gateway's own ASGI handler: Django's request handling (signals and sync
middleware, each a thread hop) would cost more than our whole latency budget.
"""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heliconeproj.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from analytics.routing import websocket_application, websocket_urlpatterns  # noqa: E402
from gateway.asgi import GatewayRouter  # noqa: E402
from heliconeproj.health import OpsEndpoints  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Proxy paths first (nothing added on their way), then /healthz, /readyz, /metrics, then Django.
        "http": GatewayRouter(OpsEndpoints(django_asgi_app)),
        # Origin checked for browsers, then the session, then the consumer's membership or key check.
        "websocket": websocket_application(URLRouter(websocket_urlpatterns)),
    }
)


def _skip_twisted_form_parsing() -> None:
    """Under daphne, Twisted parses the Content-Type of every POST with the `email`
    package, looking for form fields that daphne never reads (it passes the raw
    body to the application). On the proxy path that was about 12% of the CPU of a
    request, so turn it off for daphne's request objects."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # served by another ASGI server
        return
    if getattr(WebRequest, "_helicone_no_form_parsing", False):
        return
    original_init = WebRequest.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    WebRequest.__init__ = __init__
    WebRequest._helicone_no_form_parsing = True


_skip_twisted_form_parsing()

# Everything imported so far (Django, the apps, Twisted: ~100k objects) lives as long
# as the process. Move it out of the cyclic collector's reach, so an occasional full
# collection no longer walks it (tens of ms on this machine, a latency spike for the
# requests in flight); objects made later are collected as usual.
gc.freeze()
