"""A Node app exports a GenAI span with the real `@opentelemetry/exporter-trace-otlp-http` (OTLP/JSON)
to a daphne serving the project: the call it made to the mock provider becomes a log.

npm installs the packages (once, into var/otlp-node); where npm or its registry is not available
the test is skipped, saying so."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from analytics.models import RequestLog
from analytics.pricing import cost_usd
from tests.servers import ROOT, node_project

pytestmark = pytest.mark.django_db(transaction=True)

NODE_DIR = ROOT / "var" / "otlp-node"
PACKAGES = {"@opentelemetry/api": "^1.9.0", "@opentelemetry/sdk-trace-base": "^2.0.0",
            "@opentelemetry/exporter-trace-otlp-http": ">=0.200.0 <1"}

SCRIPT = r"""
const api = require('@opentelemetry/api');
const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');

async function main() {
  const exporter = new OTLPTraceExporter({
    url: process.env.OTLP_URL, headers: { Authorization: `Bearer ${process.env.OTLP_KEY}` } });
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer('node-app');
  const agent = tracer.startSpan('node agent', {
    attributes: { 'session.id': 'node-session', 'user.id': 'node-user' } });
  const context = api.trace.setSpan(api.ROOT_CONTEXT, agent);
  const messages = [{ role: 'user', content: 'hello from node' }];
  const call = tracer.startSpan('chat gpt-4o-mini', { kind: api.SpanKind.CLIENT, attributes: {
    'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'gpt-4o-mini',
    'gen_ai.input.messages': JSON.stringify(
      [{ role: 'user', parts: [{ type: 'text', content: messages[0].content }] }]),
  } }, context);
  const response = await fetch(process.env.MOCK_URL + '/v1/chat/completions', {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-provider-secret' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages }) });
  const body = await response.json();
  call.setAttributes({
    'gen_ai.response.model': body.model, 'gen_ai.response.id': body.id,
    'gen_ai.usage.input_tokens': body.usage.prompt_tokens, 'gen_ai.usage.output_tokens': body.usage.completion_tokens,
    'gen_ai.output.messages': JSON.stringify([{ role: 'assistant', finish_reason: body.choices[0].finish_reason,
      parts: [{ type: 'text', content: body.choices[0].message.content }] }]),
  });
  call.end();
  agent.end();
  await provider.forceFlush();
  await provider.shutdown();
  console.log(JSON.stringify({ answer: body.choices[0].message.content }));
}
main().catch((error) => { console.error(error); process.exit(1); });
"""


@pytest.fixture(scope="module")
def node_app() -> Path:
    return node_project(NODE_DIR, "otlp-node-test", PACKAGES, SCRIPT)


def test_node_exporter_json_export_becomes_a_log(node_app, gateway, tenant, mock_provider):
    result = subprocess.run(["node", str(node_app)], cwd=NODE_DIR, capture_output=True, text=True, timeout=120,
                            env={"PATH": os.environ["PATH"], "OTLP_URL": gateway.url + "/v1/traces",
                                 "OTLP_KEY": tenant.raw_key, "MOCK_URL": mock_provider.url})
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])["answer"]
    deadline = time.monotonic() + 10
    while not (logs := list(RequestLog.objects.filter(org=tenant.org))) and time.monotonic() < deadline:
        time.sleep(0.05)
    (log,) = logs
    assert (log.source, log.provider, log.model, log.prompt_tokens, log.completion_tokens) == (
        "otlp", "openai", "gpt-4o-mini", 3, 5)
    assert log.cost_usd == cost_usd("openai", "gpt-4o-mini", 3, 5)
    assert (log.user_id, log.session_id, log.session_path) == ("node-user", "node-session", "/node agent")
    assert answer in log.response_body and "hello from node" in log.request_body
