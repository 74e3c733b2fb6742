"""heliconeproj/serving.py against the installed daphne: a finished request is let
go at once instead of at daphne's once-a-second sweep (which kept a second's worth
of requests alive for the garbage collector to walk), and an application's error
is still left for the sweep to report."""

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


def test_the_asgi_entry_point_applies_both_adjustments():
    import heliconeproj.asgi  # noqa: F401
    from daphne.http_protocol import WebRequest

    assert daphne_server.Server._helicone_releases_finished
    assert WebRequest._helicone_no_form_parsing


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
