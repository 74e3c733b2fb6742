"""Upstream calls on a corporate network (issue #15): through a real forward proxy (Debian's tinyproxy,
with BasicAuth) named by HTTPS_PROXY / HTTP_PROXY, NO_PROXY, and an HTTPS upstream whose certificate
comes from a private CA (GATEWAY_CA_BUNDLE). The SSRF rules of Helicone-Target-Url apply to the
target, never to the proxy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from bench.mock_provider import MockProvider
from gateway.upstream import bypasses_proxy
from tests.servers import ROOT, Daphne, free_port, unique_stream_key, wait_for_port

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "tell me a short story"}]
PROXY_USER, PROXY_PASSWORD = "alice", "s3cret"
# Proxy variables of the machine running the tests must not leak into the gateways started here.
NO_PROXY_ENV = {name: "" for base in ("https_proxy", "http_proxy", "no_proxy", "all_proxy")
                for name in (base, base.upper())}


class Tinyproxy:
    """Debian's tinyproxy on a free port, with a config of its own: BasicAuth, every CONNECT port."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "tinyproxy.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Tinyproxy:
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        if not os.path.exists(binary):
            if os.environ.get("REQUIRE_SERVICES") == "1":
                pytest.fail("tinyproxy is not installed and REQUIRE_SERVICES=1 (make test installs it)")
            pytest.skip("Debian's tinyproxy is not installed (make test installs it)")
        config = self.workdir / "tinyproxy.conf"
        config.write_text(
            f"Port {self.port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\nAllow 127.0.0.1\n"
            f"LogLevel Connect\nBasicAuth {PROXY_USER} {PROXY_PASSWORD}\n")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=self.log_file,
                                     stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, timeout=10)
        return self

    def url(self, password: str = PROXY_PASSWORD) -> str:
        return f"http://{PROXY_USER}:{password}@127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log_file.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("upstream-network")


@pytest.fixture(scope="module")
def test_ca(workdir):
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    return ca


def tls_mock(ca, *names: str) -> MockProvider:
    """The mock provider over HTTPS, with a certificate of the test CA for `names`."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return MockProvider(ssl_context=context).start()


@pytest.fixture(scope="module")
def https_mock(test_ca):
    mock = tls_mock(test_ca, "127.0.0.1", "localhost")
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def misnamed_https_mock(test_ca):
    mock = tls_mock(test_ca, "upstream.example.test")  # trusted CA, wrong name
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def tinyproxy(workdir):
    proxy = Tinyproxy(workdir).start()
    yield proxy
    proxy.stop()


def start_gateway(workdir: Path, **env: str) -> Daphne:
    server = Daphne(**{**NO_PROXY_ENV, "LOG_STREAM_KEY": unique_stream_key(),
                       "LOG_SPOOL_DIR": str(workdir / f"spool-{uuid.uuid4().hex[:8]}"), **env})
    return server.start()


@pytest.fixture(scope="module")
def proxied_gateway(django_db_setup, django_db_blocker, workdir, test_ca, https_mock, misnamed_https_mock,
                    mock_provider, tinyproxy):
    """HTTPS_PROXY (upper case) for the https upstreams, http_proxy (lower case) for http ones, NO_PROXY,
    the test CA trusted, and client-chosen targets limited to localhost."""
    server = start_gateway(
        workdir,
        UPSTREAM_OPENAI_URL=https_mock.url,
        UPSTREAM_ANTHROPIC_URL=misnamed_https_mock.url,
        UPSTREAM_GROQ_URL=mock_provider.url,
        HTTPS_PROXY=tinyproxy.url(),
        http_proxy=tinyproxy.url(),
        NO_PROXY="example.org, localhost",
        GATEWAY_CA_BUNDLE=str(workdir / "ca.pem"),
        GATEWAY_ALLOW_PRIVATE_TARGETS="0",
        GATEWAY_ALLOWED_TARGET_HOSTS="localhost",
    )
    yield server
    server.stop()


def oai(url: str, raw_key: str, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="sk-provider", max_retries=0,
                         default_headers={"Helicone-Auth": f"Bearer {raw_key}", **headers})


def test_https_upstream_through_a_connect_tunnel_with_a_private_ca(proxied_gateway, tenant, https_mock, tinyproxy):
    https_mock.reset()
    c = oai(proxied_gateway.url + "/oai/v1", tenant.raw_key)
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "word1 word2 word3 word4 word5 "
    request_id = str(uuid.uuid4())
    chunks = list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                            extra_headers={"Helicone-Request-Id": request_id}))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "word1 word2 word3 word4 word5 "

    assert f"CONNECT 127.0.0.1:{https_mock.port}" in tinyproxy.log()
    received = https_mock.requests()
    assert len(received) == 2 and received[0]["headers"]["authorization"] == "Bearer sk-provider"
    # Inside the tunnel the proxy sees nothing: no Via header, no proxy credentials.
    assert "via" not in received[0]["headers"] and "proxy-authorization" not in received[0]["headers"]
    log = wait_for_log(raw.headers["helicone-id"])
    assert log.status == 200 and log.target_url == https_mock.url + "/v1/chat/completions"
    streamed = wait_for_log(request_id)
    assert not streamed.cancelled and streamed.completion_tokens == 5


def test_http_upstream_through_the_proxy_with_its_credentials(proxied_gateway, tenant, mock_provider, tinyproxy):
    marker = uuid.uuid4().hex
    c = oai(proxied_gateway.url + "/groq/v1", tenant.raw_key, **{"X-Test-Marker": marker})
    assert c.chat.completions.create(model="llama-3.1-8b-instant", messages=MESSAGES).choices
    [received] = [r for r in mock_provider.requests() if r["headers"].get("x-test-marker") == marker]
    assert "tinyproxy" in received["headers"]["via"]  # the proxy forwarded it
    assert "proxy-authorization" not in received["headers"]  # the proxy took its credentials
    assert f"http://127.0.0.1:{mock_provider.port}/v1/chat/completions" in tinyproxy.log()


def test_no_proxy_hosts_are_reached_directly(proxied_gateway, tenant, mock_provider, tinyproxy):
    marker = uuid.uuid4().hex
    target = f"http://localhost:{mock_provider.port}"
    c = oai(proxied_gateway.url + "/gateway/v1", tenant.raw_key,
            **{"Helicone-Target-Url": target, "X-Test-Marker": marker})
    assert c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    [received] = [r for r in mock_provider.requests() if r["headers"].get("x-test-marker") == marker]
    assert "via" not in received["headers"]
    assert f"localhost:{mock_provider.port}" not in tinyproxy.log()


def test_ssrf_rules_apply_to_the_target_not_the_proxy(proxied_gateway, tenant, mock_provider, tinyproxy):
    """The proxy is on a loopback address, which is fine; a loopback target is still refused."""
    marker = uuid.uuid4().hex
    before = tinyproxy.log()
    response = httpx.post(proxied_gateway.url + "/gateway/v1/chat/completions", timeout=10,
                          json={"model": "gpt-4o-mini", "messages": MESSAGES},
                          headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Test-Marker": marker,
                                   "Helicone-Target-Url": f"http://127.0.0.1:{mock_provider.port}"})
    assert response.status_code == 400
    assert "Helicone-Target-Url" in response.json()["error"]["message"]
    assert "loopback" in response.json()["error"]["message"]
    assert not [r for r in mock_provider.requests() if r["headers"].get("x-test-marker") == marker]
    assert tinyproxy.log() == before, "nothing was sent to the proxy"


def test_a_certificate_for_another_name_is_a_502_naming_it(proxied_gateway, tenant, misnamed_https_mock):
    response = httpx.post(proxied_gateway.url + "/anthropic/v1/messages", timeout=10,
                          json={"model": "claude-3-5-haiku-20241022", "max_tokens": 10, "messages": MESSAGES},
                          headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "x-api-key": "sk-ant"})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert f"TLS certificate of 127.0.0.1:{misnamed_https_mock.port} is not trusted" in message
    assert "mismatch" in message.lower()
    assert not misnamed_https_mock.requests()
    log = wait_for_log(response.headers["helicone-id"])
    assert log.status == 502 and "TLS certificate" in log.error


def test_an_untrusted_certificate_is_a_502_naming_the_tls_problem(workdir, tenant, https_mock):
    """Without the private CA (the system's CAs only), directly, without a proxy."""
    server = start_gateway(workdir, UPSTREAM_OPENAI_URL=https_mock.url, GATEWAY_CA_BUNDLE="",
                           SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt")
    try:
        with pytest.raises(openai.InternalServerError) as info:
            oai(server.url + "/oai/v1", tenant.raw_key).chat.completions.create(model="gpt-4o-mini",
                                                                                messages=MESSAGES)
    finally:
        server.stop()
    response = info.value.response
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert f"TLS certificate of 127.0.0.1:{https_mock.port} is not trusted" in message
    assert "unable to get local issuer certificate" in message and "GATEWAY_CA_BUNDLE" in message


def test_wrong_proxy_credentials_are_a_502_naming_the_proxy(workdir, tenant, https_mock, tinyproxy):
    server = start_gateway(workdir, UPSTREAM_OPENAI_URL=https_mock.url, https_proxy=tinyproxy.url("wrong"),
                           GATEWAY_CA_BUNDLE=str(workdir / "ca.pem"))
    try:
        response = httpx.post(server.url + "/oai/v1/chat/completions", timeout=10,
                              json={"model": "gpt-4o-mini", "messages": MESSAGES},
                              headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "Authorization": "Bearer sk"})
    finally:
        server.stop()
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert f"the proxy 127.0.0.1:{tinyproxy.port} (HTTPS_PROXY) refused CONNECT 127.0.0.1:{https_mock.port}" in message
    assert "check the user and password in the proxy URL" in message and "wrong" not in message


@pytest.mark.parametrize("env, variable", [
    ({"HTTPS_PROXY": "socks5://127.0.0.1:1080"}, "HTTPS_PROXY"),
    ({"http_proxy": "http://127.0.0.1:notaport"}, "http_proxy"),
    ({"GATEWAY_CA_BUNDLE": "/nonexistent/ca.pem"}, "GATEWAY_CA_BUNDLE"),
])
def test_a_bad_setting_stops_the_start_naming_it(env, variable):
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **NO_PROXY_ENV, **env}, timeout=60)
    assert result.returncode != 0
    assert variable in result.stderr


@pytest.mark.parametrize("host, port, no_proxy, bypassed", [
    ("api.openai.com", 443, ["openai.com"], True),
    ("api.openai.com", 443, [".openai.com"], True),
    ("notopenai.com", 443, ["openai.com"], False),
    ("api.openai.com", 443, ["openai.com:8443"], False),
    ("api.openai.com", 8443, ["openai.com:8443"], True),
    ("anything.example", 80, ["*"], True),
    ("10.1.2.3", 80, ["10.0.0.0/8"], True),
    ("10.1.2.3", 80, ["10.1.2.3"], True),
    ("11.1.2.3", 80, ["10.0.0.0/8"], False),
    ("::1", 80, ["::1"], True),
    ("::1", 80, ["[::1]:80"], True),
    ("LocalHost", 80, ["localhost"], True),
    ("example.org", 80, [], False),
])
def test_no_proxy_reads_as_curl_reads_it(host, port, no_proxy, bypassed):
    assert bypasses_proxy(host, port, no_proxy) is bypassed

