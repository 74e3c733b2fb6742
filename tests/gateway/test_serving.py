"""heliconeproj/serving.py against the installed daphne: a finished request is let
go at once instead of at daphne's once-a-second sweep (which kept a second's worth
of requests alive for the garbage collector to walk), and an application's error
is still left for the sweep to report. Header names with `_` reaching the gateway
(and not Django's views) are checked through a real daphne in test_helicone_headers.py."""

import asyncio
import logging

import pytest

from heliconeproj import serving

daphne_server = pytest.importorskip("daphne.server")


async def answered(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def broken(scope, receive, send):
    raise RuntimeError("application bug")


class FakeProtocol:
    """What daphne's server needs of a request: a hashable handle that takes the
    application's messages and its error (daphne's WebRequest writes them out)."""

    def __init__(self):
        self.errors = []
        self.replies = []

    def handle_reply(self, message):
        self.replies.append(message["type"])

    def handle_exception(self, exception):
        self.errors.append(exception)


def make_server(application):
    server = daphne_server.Server(application, endpoints=["tcp:port=0:interface=127.0.0.1"], signal_handlers=False)
    server.connections = {}  # what Server.run() starts with
    return server


def serve(application, protocol, disconnect_first: bool):
    server = make_server(application)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        server.protocol_connected(protocol)
        server.create_application(protocol, {"type": "http", "method": "POST", "path": "/oai/v1/chat/completions"})
        instance = server.connections[protocol]["application_instance"]
        if disconnect_first:
            server.protocol_disconnected(protocol)  # the response went out; the app runs on
        loop.run_until_complete(asyncio.wait([instance]))
        loop.run_until_complete(asyncio.sleep(0))  # done callbacks run
        if not disconnect_first:
            server.protocol_disconnected(protocol)
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    return server


def test_the_asgi_entry_point_applies_every_adjustment():
    from daphne.http_protocol import WebRequest

    import heliconeproj.asgi  # noqa: F401

    assert daphne_server.Server._helicone_releases_finished
    assert daphne_server.Server._helicone_keeps_underscore_headers
    assert WebRequest._helicone_no_form_parsing


def test_daphne_still_drops_underscore_headers_where_the_adjustment_restores_them():
    """If a daphne release stopped dropping them (or moved where), the adjustment would be dead code:
    daphne's request handling must still hold the check it undoes, and name the CVE it guards."""
    import inspect

    from daphne.http_protocol import WebRequest

    source = inspect.getsource(WebRequest.process)
    assert 'if b"_" in name:' in source and "CVE-2015-0219" in source
    assert '"headers": self.clean_headers' in source, "the scope daphne builds still takes clean_headers"


def test_underscore_headers_reach_the_application_as_sent():
    from twisted.web.http_headers import Headers

    serving.keep_underscore_headers()
    seen = []

    async def application(scope, receive, send):
        seen.append(scope["headers"])

    protocol = FakeProtocol()
    protocol.requestHeaders = Headers({b"Helicone-Property-My_Prop": [b"x"], b"X-Plain": [b"a", b"b"],
                                       b"Daphne-Root-Path": [b"/root"]})
    server = make_server(application)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        server.protocol_connected(protocol)
        # What daphne hands over: its clean_headers, without the underscore one.
        server.create_application(protocol, {"type": "http", "headers": [(b"x-plain", b"a"), (b"x-plain", b"b")]})
        loop.run_until_complete(server.connections[protocol]["application_instance"])
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    assert seen == [[(b"helicone-property-my_prop", b"x"), (b"x-plain", b"a"), (b"x-plain", b"b")]]


@pytest.mark.parametrize("disconnect_first", [True, False], ids=["answered-then-returned", "returned-then-closed"])
def test_a_finished_request_is_released_without_waiting_for_the_sweep(disconnect_first):
    serving.release_finished_requests()
    protocol = FakeProtocol()
    server = serve(answered, protocol, disconnect_first)
    assert protocol not in server.connections
    if not disconnect_first:
        assert protocol.replies == ["http.response.start", "http.response.body"]


def test_a_request_still_running_is_kept():
    serving.release_finished_requests()
    server = make_server(answered)
    protocol = FakeProtocol()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        server.protocol_connected(protocol)
        server.create_application(protocol, {"type": "http"})
        server.protocol_disconnected(protocol)  # not run yet: the application has not returned
        assert protocol in server.connections
        loop.run_until_complete(asyncio.wait([server.connections[protocol]["application_instance"]]))
        loop.run_until_complete(asyncio.sleep(0))
        assert protocol not in server.connections
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def test_an_application_error_is_left_for_the_sweep_to_log(caplog):
    serving.release_finished_requests()
    protocol = FakeProtocol()
    server = serve(broken, protocol, disconnect_first=True)
    assert protocol in server.connections
    with caplog.at_level(logging.ERROR, logger="daphne.server"):
        server.application_checker()
    assert "Exception inside application: application bug" in caplog.text
    assert protocol not in server.connections
