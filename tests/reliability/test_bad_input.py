"""Bad input through a real daphne: each is a 4xx whose message names the problem, nothing
reaches the provider (the mock's /__mock/requests stays empty) and nothing is half-stored.

An authenticated refusal is logged as one complete row (its status, the error naming the
problem, no usage, no cost: `Helicone-Id` always names a log); an unauthenticated one
writes nothing. Requests go over a raw socket where an HTTP client would refuse or
normalise the bytes (control characters, non-UTF-8, `..` segments).
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from analytics.models import RequestLog
from prompts.models import Prompt
from tests.gateway.conftest import mock_provider, tenant, wait_for_log  # noqa: F401
from tests.servers import Daphne, unique_stream_key

pytestmark = pytest.mark.django_db(transaction=True)

MAX_BODY = 100_000
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
CHAT = "/oai/v1/chat/completions"


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, mock_provider):  # noqa: F811
    server = Daphne(
        UPSTREAM_OPENAI_URL=mock_provider.url,
        UPSTREAM_ANTHROPIC_URL=mock_provider.url,
        GATEWAY_MAX_BODY_BYTES=str(MAX_BODY),
        LOG_STREAM_KEY=unique_stream_key(),
        LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}",
    )
    server.start()
    yield server
    server.stop()


class Reply:
    def __init__(self, raw: bytes):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def message(self) -> str:
        return json.loads(self.body)["error"]["message"]


def send(gateway, headers: list[tuple[bytes, bytes]] | dict, path: str = CHAT, body: bytes = BODY,
         method: str = "POST", chunked: bool = False) -> Reply:
    """One request on its own connection, the bytes exactly as given."""
    if isinstance(headers, dict):
        headers = [(k.encode(), v.encode("utf-8")) for k, v in headers.items()]
    lines = [f"{method} ".encode() + path.encode("latin-1") + b" HTTP/1.1", f"Host: 127.0.0.1:{gateway.port}".encode(),
             b"Connection: close", b"Content-Type: application/json"]
    lines += [name + b": " + value for name, value in headers]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 8192]), body[i:i + 8192])
                           for i in range(0, len(body), 8192)) + b"0\r\n\r\n"
    else:
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        try:
            sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole body was read: the answer is still there
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return Reply(raw)


def long(n: int) -> str:
    return "x" * n


# (header, value, path): every Helicone-* header the gateway reads, each with a malformed value.
MALFORMED_HEADERS = [
    ("Helicone-Request-Id", "not-a-uuid", CHAT),
    ("Helicone-User-Id", long(256), CHAT),
    ("Helicone-Session-Id", long(256), CHAT),
    ("Helicone-Session-Path", long(501), CHAT),
    ("Helicone-Session-Name", long(256), CHAT),
    ("Helicone-Request-Name", long(256), CHAT),
    ("Helicone-Model-Override", long(201), CHAT),
    ("Helicone-Omit-Request", "maybe", CHAT),
    ("Helicone-Omit-Response", "sometimes", CHAT),
    ("Helicone-Target-Url", "ftp://example.com", "/gateway/v1/chat/completions"),
    ("Helicone-OpenAI-Api-Base", "javascript:alert(1)", CHAT),
    ("Helicone-Prompt-Id", long(101), CHAT),
    ("Helicone-Prompt-Variables", "[1, 2]", CHAT),
    ("Helicone-Prompt-Version", "v2", CHAT),
    ("Helicone-Prompt-Environment", long(101), CHAT),
    ("Helicone-Cache-Enabled", "yes please", CHAT),
    ("Helicone-Cache-Save", "2", CHAT),
    ("Helicone-Cache-Read", "perhaps", CHAT),
    ("Helicone-Cache-Seed", long(256), CHAT),
    ("Helicone-Cache-Ignore-Keys", long(1001), CHAT),
    ("Helicone-Cache-Bucket-Max-Size", "0", CHAT),
    ("Helicone-Cache-Semantic", "maybe", CHAT),
    ("Helicone-Cache-Semantic-Threshold", "1.5", CHAT),
    ("Helicone-Cache-Semantic-Scope", "team", CHAT),
    ("Helicone-Retry-Enabled", "nah", CHAT),
    ("Helicone-Retry-Num", "11", CHAT),  # checked even while retries are off
    ("Helicone-Retry-Factor", "nan", CHAT),
    ("Helicone-Retry-Min-Timeout", "-1", CHAT),
    ("Helicone-Retry-Max-Timeout", "600001", CHAT),
    ("Helicone-RateLimit-Policy", "10;w=0", CHAT),
    ("Helicone-Fallback", '[{"model": 1}]', CHAT),
    ("Helicone-Fallback", "[" * 5000, CHAT),  # nested past the JSON parser's depth
    ("Helicone-Fallbacks", '{"target-url": "http://example.com"}', CHAT),
    ("Helicone-Property-Bad!Name", "x", CHAT),
    ("Helicone-Property-Feature", long(1001), CHAT),
]
HEADER_INJECTION = [
    # Values that would smuggle a header line or a Host upstream.
    ("Helicone-Fallbacks", json.dumps([{"target-url": "http://127.0.0.1:9",
                                        "headers": {"X-Note": "a\r\nHost: evil.example"}}])),
    ("Helicone-Fallbacks", json.dumps([{"headers": {"Host": "evil.example"}}])),
    ("Helicone-Fallbacks", json.dumps([{"headers": {"Helicone-Auth": "Bearer sk-helicone-other"}}])),
]
RAW_HEADER_BYTES = [
    # (name, raw value): control characters and bytes that are not UTF-8.
    (b"Helicone-User-Id", b"alice\x00admin"),
    (b"Helicone-Property-Feature", b"a\x1b[31mred"),
    (b"Helicone-Session-Name", b"caf\xe9"),  # latin-1, not UTF-8
    (b"Helicone-User-Id", b"\xff\xfe\xfd"),
    (b"Helicone-Request-Name", b"\xc3\x28"),  # a broken UTF-8 sequence
]
TRAVERSAL = [
    "/oai/v1/../../admin/",
    "/oai/v1/%2e%2e/admin",
    "/oai/v1/..%2Fadmin",
    "/oai/v1/x/.%2E/y",
    "/oai/v1/x/..%5cadmin",
    "/oai/v1/x\\..\\admin",
    "/anthropic/v1/./messages",
    "/gateway/v1/%2E%2E/internal",
]


def check_refusals(tenant, mock_provider, sent: list[tuple[str, Reply, int, tuple[str, ...]]]):  # noqa: F811
    """Each refusal names its problem, nothing went upstream, and each has one complete log row.

    The requests of a table are sent first and their logs awaited together: one writer delay, not one each."""
    for label, reply, status, names in sent:
        assert reply.status == status, (label, reply.status, reply.body)
        message = reply.message()
        for name in names:
            assert name.lower() in message.lower(), (label, message)
    assert mock_provider.requests() == [], [(r["path"], r["headers"]) for r in mock_provider.requests()]
    logs = {}
    for label, reply, status, _ in sent:
        log = wait_for_log(reply.headers["helicone-id"])
        assert (log.org_id, log.status) == (tenant.org.id, status), label
        assert reply.message() in log.error, (label, log.error)
        assert (log.prompt_tokens, log.completion_tokens, log.cost_usd, log.cache_hit) == (None, None, None, False)
        logs[label] = log
    assert RequestLog.objects.filter(org=tenant.org).count() == len(sent)
    assert not Prompt.objects.exists()
    return logs


def authed(tenant, extra=None) -> dict:  # noqa: F811
    return {"Helicone-Auth": f"Bearer {tenant.raw_key}", **(extra or {})}


def test_every_helicone_header_with_a_malformed_value_is_a_400_naming_it(gateway, tenant, mock_provider):  # noqa: F811
    mock_provider.reset()
    sent = []
    for header, value, path in MALFORMED_HEADERS:
        headers = authed(tenant, {header: value})
        if path.startswith("/gateway/") and header != "Helicone-Target-Url":
            headers["Helicone-Target-Url"] = mock_provider.url
        reply = send(gateway, headers, path)
        sent.append((f"{header}: {value[:20]}", reply, 400, (header,)))
        assert json.loads(reply.body)["error"]["type"] == "helicone_header_error", (header, reply.body)
    check_refusals(tenant, mock_provider, sent)


def test_the_table_names_every_header_the_parser_reads():
    from formats import headers

    known = {name for name in (*headers._HANDLERS, *headers._DEFERRED)} - {"helicone-auth"}
    tabled = {header.lower() for header, _, _ in MALFORMED_HEADERS}
    assert known - tabled == set(), "add a malformed value for these headers to MALFORMED_HEADERS"
    assert any(h.startswith(headers.PROPERTY_PREFIX) for h in tabled)


def test_header_injection_through_fallback_headers_is_refused(gateway, tenant, mock_provider):  # noqa: F811
    mock_provider.reset()
    sent = [(value, send(gateway, authed(tenant, {header: value})), 400, (header,))
            for header, value in HEADER_INJECTION]
    check_refusals(tenant, mock_provider, sent)


def test_control_characters_and_non_utf8_bytes_in_headers_are_refused(gateway, tenant, mock_provider):  # noqa: F811
    mock_provider.reset()
    sent = []
    for name, value in RAW_HEADER_BYTES:
        reply = send(gateway, [(b"Helicone-Auth", f"Bearer {tenant.raw_key}".encode()), (name, value)])
        if reply.status == 400 and "helicone-id" not in reply.headers:
            continue  # refused by daphne's HTTP parser before the gateway saw it: nothing to store either
        sent.append((repr(value), reply, 400, (name.decode(),)))
    logs = check_refusals(tenant, mock_provider, sent)
    assert len(logs) >= len(RAW_HEADER_BYTES) - 1  # only NUL is refused by daphne itself
    for log in logs.values():
        assert "control characters" in log.error or "UTF-8" in log.error


def test_utf8_header_values_are_read_as_utf8(gateway, tenant, mock_provider):  # noqa: F811
    # The other half of the rule above: UTF-8 text is stored as the text it is.
    reply = send(gateway, [(b"Helicone-Auth", f"Bearer {tenant.raw_key}".encode()),
                           (b"Helicone-Property-City", "Zürich".encode()), (b"Helicone-User-Id", "Jörg".encode())])
    assert reply.status == 200, reply.body
    log = wait_for_log(reply.headers["helicone-id"])
    assert (log.properties, log.user_id) == ({"City": "Zürich"}, "Jörg")


def test_path_traversal_in_proxy_paths_is_refused(gateway, tenant, mock_provider):  # noqa: F811
    mock_provider.reset()
    headers = authed(tenant, {"Helicone-Target-Url": mock_provider.url})
    sent = [(path, send(gateway, headers, path), 400, ("path traversal",)) for path in TRAVERSAL]
    check_refusals(tenant, mock_provider, sent)


MALFORMED_BODIES = [b'{"model": "gpt-4o-mini",', b'{"model": "\xff\xfe"}', b"\x00\x01\x02", b'{"model": NaN}',
                    b'{"model": Infinity}', b"{" * 10_000, b"[" * 50_000]


def test_malformed_json_bodies_are_a_400(gateway, tenant, mock_provider):  # noqa: F811
    mock_provider.reset()
    sent = [(repr(body[:20]), send(gateway, authed(tenant), body=body), 400, ("not valid JSON",))
            for body in MALFORMED_BODIES]
    logs = check_refusals(tenant, mock_provider, sent)
    for _, reply, _, _ in sent:
        assert json.loads(reply.body)["error"]["type"] == "helicone_request_error"
    assert all(log.response_body for log in logs.values())  # the error the client got


def test_a_body_past_the_limit_is_a_413_and_not_stored(gateway, tenant, mock_provider):  # noqa: F811
    mock_provider.reset()
    big = b'{"model": "gpt-4o-mini", "pad": "' + b"x" * MAX_BODY + b'"}'
    sent = [(f"chunked={chunked}", send(gateway, authed(tenant), body=big, chunked=chunked), 413,
             (f"limit of {MAX_BODY} bytes",)) for chunked in (False, True)]
    logs = check_refusals(tenant, mock_provider, sent)
    assert all(log.request_body == "" for log in logs.values())


def test_unauthenticated_bad_input_writes_nothing(gateway, tenant, mock_provider):  # noqa: F811
    mock_provider.reset()
    for headers in ({"Helicone-Request-Id": "nope"}, {"Helicone-Auth": "Basic abc", "Helicone-User-Id": long(300)},
                    {"Helicone-Auth": "Bearer sk-helicone-unknown", "Helicone-Omit-Request": "maybe"}):
        reply = send(gateway, headers)
        assert reply.status == 401 and "Helicone" in reply.message(), reply.body
        assert "helicone-id" in reply.headers
    assert mock_provider.requests() == []
    # A later refusal of a known key is written: once it is there, nothing before it was.
    barrier = send(gateway, authed(tenant, {"Helicone-Omit-Request": "maybe"}))
    wait_for_log(barrier.headers["helicone-id"])
    assert RequestLog.objects.count() == 1
