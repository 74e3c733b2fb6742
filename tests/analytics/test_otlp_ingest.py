"""OpenTelemetry ingest end to end: an OpenAI client instrumented with OpenLLMetry's
`opentelemetry-instrumentation-openai` calls the mock provider directly (not through the gateway),
the real SDK exports its spans over OTLP/HTTP to a daphne serving the project, and the calls show
up as logs with their tokens, cost, user and session, on the API and the session page.

The instrumented app (otlp_app.py) runs in a process of its own, as an app does."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from analytics.models import RequestLog
from analytics.pricing import cost_usd
from tests.analytics.otlp_helpers import as_json
from tests.gateway.conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

APP = Path(__file__).with_name("otlp_app.py")
QUESTION = [{"role": "user", "content": "plan a short trip"}]  # 4 words: 4 prompt tokens at the mock


class App:
    """otlp_app.py running one scenario; `lines` are the JSON lines it printed."""

    def __init__(self, scenario: str, **options):
        self.proc = subprocess.Popen([sys.executable, str(APP), scenario, json.dumps(options)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def line(self) -> dict:
        text = self.proc.stdout.readline()
        assert text, f"the app stopped: {self.proc.stderr.read()[-3000:]}"
        return json.loads(text)

    def go_on(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self) -> list[dict]:
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err[-3000:]
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert lines and lines[-1] == {"done": True}, err[-3000:]
        return lines


def run(scenario: str, gateway, tenant, mock_provider, path: str = "/v1/traces", **options) -> list[dict]:
    return App(scenario, endpoint=gateway.url + path, key=tenant.raw_key, mock=mock_provider.url,
               gateway=gateway.url, **options).finish()


def otlp_logs(org, count: int, timeout: float = 15.0, **filters) -> list[RequestLog]:
    deadline = time.monotonic() + timeout
    while True:
        logs = list(RequestLog.objects.filter(org=org, source="otlp", **filters).order_by("created_at"))
        if len(logs) >= count or time.monotonic() > deadline:
            return logs
        time.sleep(0.05)


def test_plain_and_streamed_calls_become_logs_with_tokens_cost_user_and_session(gateway, tenant, mock_provider,
                                                                                  client):
    mock_provider.reset()
    said = run("agent", gateway, tenant, mock_provider)[0]
    # The calls went to the provider directly: the gateway proxied nothing.
    assert len(mock_provider.requests()) == 2

    plain, streamed = otlp_logs(tenant.org, 2)
    assert (plain.streamed, streamed.streamed) == (False, True)
    for log in (plain, streamed):
        assert log.api_key_id == tenant.key.id
        assert (log.provider, log.requested_model, log.model, log.status) == ("openai", "gpt-4o-mini", "gpt-4o-mini",
                                                                             200)
        assert (log.prompt_tokens, log.completion_tokens) == (4, 5)
        assert log.cost_usd == cost_usd("openai", "gpt-4o-mini", 4, 5) and log.cost_usd > 0
        assert (log.user_id, log.session_id, log.properties) == ("ana", "trip-42", {"Feature": "planner"})
        assert log.latency_ms > 0
        assert "plan a short trip" in log.request_body
        assert "sk-provider-secret" not in log.request_body + str(log.request_headers)
    assert (plain.session_path, streamed.session_path) == ("/trip agent/plan", "/trip agent/write up")
    assert said["answer"] in plain.response_body and said["streamed"] in streamed.response_body
    assert streamed.ttft_ms is not None and 0 < streamed.ttft_ms <= streamed.latency_ms

    # The same logs on the API and the session page, as a tree of the agent's spans.
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tenant.raw_key}"}
    listed = client.get("/api/v1/requests?session_id=trip-42", **auth).json()
    assert {item["id"] for item in listed["items"]} == {str(plain.id), str(streamed.id)}
    detail = client.get(f"/api/v1/requests/{plain.id}", **auth).json()
    assert detail["response_body"]["choices"][0]["message"]["content"] == said["answer"]
    assert detail["request_body"]["messages"] == QUESTION
    client.force_login(tenant.user)
    page = client.get("/o/acme/sessions/trip-42/")
    assert page.status_code == 200
    text = page.content.decode()
    for name in ("trip agent", "plan", "write up", str(plain.id)):
        assert name in text


def test_context_set_on_a_parent_exported_later_reaches_the_logs_already_stored(gateway, tenant, mock_provider):
    # One export per span as it ends: the LLM span is stored before its parent is known.
    app = App("late", endpoint=gateway.url + "/v1/traces", key=tenant.raw_key, mock=mock_provider.url)
    trace_id = app.line()["trace_id"]
    (early,) = otlp_logs(tenant.org, 1)
    # The OpenAI `user` parameter is the user until the trace names one; the trace is the session.
    assert (early.user_id, early.session_id, early.session_path) == ("end-user-7", trace_id, "/")
    app.go_on()
    app.finish()
    log = RequestLog.objects.get(id=early.id)
    assert (log.session_id, log.session_path, log.user_id) == ("ticket-9", "/support ticket", "customer-1")
    assert RequestLog.objects.filter(org=tenant.org).count() == 1


def test_a_call_alone_in_its_trace_is_a_log_without_a_session(gateway, tenant, mock_provider):
    run("alone", gateway, tenant, mock_provider, plain=True)
    (log,) = otlp_logs(tenant.org, 1)
    assert (log.session_id, log.session_path, log.status, log.prompt_tokens) == ("", "", 200, 4)


def test_a_failed_call_is_an_error_log_with_the_providers_status(gateway, tenant, mock_provider):
    assert run("error", gateway, tenant, mock_provider)[0] == {"error": "RateLimitError"}
    (log,) = otlp_logs(tenant.org, 1)
    assert log.status == 429
    assert "RateLimitError" in log.error and "429" in log.error
    assert log.cost_usd is None and log.prompt_tokens is None


def test_helicone_auth_header_and_the_helicone_logger_path(gateway, tenant, mock_provider):
    # Helicone's Python async logger exports protobuf to /v1/trace/log-python.
    run("alone", gateway, tenant, mock_provider, path="/v1/trace/log-python", header="Helicone-Auth")
    (log,) = otlp_logs(tenant.org, 1)
    assert log.api_key_id == tenant.key.id and log.prompt_tokens == 4


def test_a_call_both_proxied_and_traced_is_logged_once_by_the_proxy(gateway, tenant, mock_provider):
    said = run("proxied", gateway, tenant, mock_provider)[0]
    proxied = wait_for_log(said["helicone_id"])
    # The app exited after its exports were answered, and they are answered once stored.
    logs = list(RequestLog.objects.filter(org=tenant.org))
    assert [log.id for log in logs] == [proxied.id]
    assert logs[0].source == "proxy"
    # The proxied log, which named no session, is placed in the trace's session.
    assert logs[0].session_path == "/agent" and len(logs[0].session_id) == 32


def test_json_and_protobuf_exports_of_the_same_spans_give_the_same_logs(gateway, tenant, mock_provider):
    """The SDK's own protobuf encoding of recorded spans, and the OTLP/JSON form of the same message."""
    protobuf = base64.b64decode(run("record", gateway, tenant, mock_provider)[0]["protobuf"])
    message = ExportTraceServiceRequest.FromString(protobuf)
    json_body = as_json(message)

    def post(path, body, content_type, raw_key):
        return httpx.post(gateway.url + path, content=body, timeout=20,
                          headers={"Content-Type": content_type, "Authorization": f"Bearer {raw_key}"})

    assert post("/v1/traces", protobuf, "application/x-protobuf", tenant.raw_key).status_code == 200
    response = post("/v1/trace/log", json_body, "application/json", tenant.other_raw_key)
    assert response.status_code == 200 and response.json() == {}

    def shown(org):
        logs = RequestLog.objects.filter(org=org).order_by("created_at")
        return [{k: v for k, v in log.__dict__.items() if k not in ("_state", "id", "org_id", "api_key_id")}
                for log in logs]

    from_protobuf, from_json = shown(tenant.org), shown(tenant.other_org)
    assert len(from_protobuf) == 2 and from_protobuf == from_json
    assert from_protobuf[0]["user_id"] == "ana" and from_protobuf[0]["session_id"] == "same-spans"
    assert from_protobuf[1]["streamed"] and from_protobuf[1]["completion_tokens"] == 5
    # Sent again (an exporter retrying): nothing is added.
    assert post("/v1/traces", protobuf, "application/x-protobuf", tenant.raw_key).status_code == 200
    assert post("/v1/trace/log", json_body, "application/json", tenant.other_raw_key).status_code == 200
    assert RequestLog.objects.count() == 4
