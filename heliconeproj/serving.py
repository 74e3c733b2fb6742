"""Three adjustments to daphne (and the Twisted under it).

Two are for the proxy's hot path, one lets header names with `_` through to the
application. All are applied once, from heliconeproj/asgi.py, and only change what daphne
does with a request after it reaches us; under another ASGI server they do
nothing. tests/gateway/test_serving.py checks they still take effect with the
installed daphne.
"""

from __future__ import annotations


def skip_twisted_form_parsing() -> None:
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


def release_finished_requests() -> None:
    """Let go of a request as soon as it is answered and its application has returned.

    daphne keeps every request (Twisted's request object, its headers, the
    application's task, queue and coroutine) in `Server.connections` until a sweep
    that runs once a second. At 1,000 requests a second that is a thousand finished
    requests alive at any time: they outlive two garbage-collector generations, so
    the collector keeps running full collections (15-40 ms each, every second or
    two on this machine, a stall for whatever request is in flight), and the sweep
    itself frees them all at once (about 10 ms). Releasing each one when it is done
    leaves the sweep only its other job: logging an application's exception and
    cancelling an application that outlives its connection, which this leaves to
    it (an instance that raised is kept for the sweep to report)."""
    try:
        from daphne.server import Server
    except ImportError:  # served by another ASGI server
        return
    if getattr(Server, "_helicone_releases_finished", False):
        return

    def release(server, protocol) -> None:
        details = server.connections.get(protocol)
        if not details or "disconnected" not in details:
            return
        instance = details.get("application_instance")
        if instance is None or not instance.done():
            return
        if instance.cancelled() or instance.exception() is None:
            del server.connections[protocol]

    original_create = Server.create_application
    original_disconnected = Server.protocol_disconnected

    def create_application(self, protocol, scope):
        input_queue = original_create(self, protocol, scope)
        if input_queue is not None:
            instance = self.connections[protocol]["application_instance"]
            instance.add_done_callback(lambda _: release(self, protocol))
        return input_queue

    def protocol_disconnected(self, protocol):
        original_disconnected(self, protocol)
        release(self, protocol)

    Server.create_application = create_application
    Server.protocol_disconnected = protocol_disconnected
    Server._helicone_releases_finished = True


def keep_underscore_headers() -> None:
    """Hand request headers whose name has `_` to the application, as the client sent them.

    daphne drops them (CVE-2015-0219): a CGI-style server turns both `X-Auth-User` and
    `X-Auth_User` into `HTTP_X_AUTH_USER`, so a client could pass a header that a proxy in
    front strips, under the other spelling. Helicone accepts such names
    (`Helicone-Property-My_Prop`, `s=my-tenant_id`), and the gateway reads the ASGI
    headers as byte pairs by their exact name, where the two spellings never meet. The
    one place that builds the CGI-style names, Django's `ASGIRequest.META` (pages, APIs),
    skips names with `_` itself, for the same reason."""
    try:
        from daphne.server import Server
    except ImportError:  # served by another ASGI server, which decides for itself
        return
    if getattr(Server, "_helicone_keeps_underscore_headers", False):
        return
    original_create = Server.create_application

    def create_application(self, protocol, scope):
        sent = getattr(protocol, "requestHeaders", None)
        # One search of the names joined (C loops, ~1.5 us a request here; a generator took ~3.5 us).
        if scope.get("type") == "http" and sent is not None and b"_" in b"".join(dict(sent.getAllRawHeaders())):
            # daphne's own loop, less its underscore check.
            scope["headers"] = [(name.lower(), value) for name, values in sent.getAllRawHeaders()
                                if name.lower() != b"daphne-root-path" for value in values]
        return original_create(self, protocol, scope)

    Server.create_application = create_application
    Server._helicone_keeps_underscore_headers = True
