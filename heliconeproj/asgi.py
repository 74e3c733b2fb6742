"""ASGI entry point: the gateway's proxy routes, Django for everything else,
and Channels for WebSockets.

Proxy paths (/oai/, /anthropic/, /gateway/, the named providers) go straight to
the gateway's own ASGI handler: Django's request handling (signals and sync
middleware, each a thread hop) would cost more than our whole latency budget.
"""

import gc
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heliconeproj.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from analytics import logqueue, pricing  # noqa: E402
from analytics.routing import websocket_application, websocket_urlpatterns  # noqa: E402
from gateway.asgi import GatewayRouter  # noqa: E402
from heliconeproj import serving  # noqa: E402
from heliconeproj.health import OpsEndpoints  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Proxy paths first (nothing added on their way), then /healthz, /readyz, /metrics, then Django.
        "http": GatewayRouter(OpsEndpoints(django_asgi_app)),
        # Origin checked for browsers, then the session, then the consumer's membership or key check.
        "websocket": websocket_application(URLRouter(websocket_urlpatterns)),
    }
)


serving.skip_twisted_form_parsing()
serving.release_finished_requests()
serving.keep_underscore_headers()
if settings.LOG_WRITER_IN_PROCESS or not settings.REDIS_URL:
    # The log writer runs in this process: load the price tables it needs now, so
    # they are frozen with the rest below instead of joining the collector's work.
    pricing.load_tables()
if not settings.TESTING:
    # The log writer starts with the process, not with its first request: what a process that
    # died left in its journal (or the stream) is written even while no traffic comes. (A test
    # run imports this module before its database exists: there the writer starts on demand.)
    # Under daphne the embedded writer is a process of its own, its live events relayed by
    # daphne's event loop (analytics/writer_process.py). daphne.server (imported by every
    # process, daphne being an installed app) made that loop; only daphne's own command line
    # or runserver will run it.
    served_by_daphne = "daphne.cli" in sys.modules or "daphne.management.commands.runserver" in sys.modules
    logqueue.start(sys.modules["daphne.server"].twisted_loop if served_by_daphne else None)

# Everything loaded so far (Django, the apps, Twisted, the price tables: ~145k
# objects) lives as long as the process. Move it out of the cyclic collector's
# reach, so an occasional full collection no longer walks it (tens of ms on this
# machine, a latency spike for the requests in flight); objects made later are
# collected as usual.
gc.freeze()
