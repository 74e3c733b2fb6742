"""A Node app uses Helicone's real TypeScript helpers (`@helicone/helpers`) against a daphne serving the
project: `HeliconeManualLogger.logRequest` and a log builder fed a stream, both after calling the mock
provider directly, and `HeliconePromptManager.getPromptBody` for production and an environment.

npm installs the package (once, into var/helicone-node); where node, npm or its registry is not
available the test is skipped, saying so."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from analytics.pricing import cost_usd
from tests.gateway.conftest import wait_for_log
from tests.servers import ROOT, node_project

pytestmark = pytest.mark.django_db(transaction=True)

NODE_DIR = ROOT / "var" / "helicone-node"
PACKAGES = {"@helicone/helpers": "1.8.3"}

SCRIPT = r"""
const { HeliconeManualLogger, HeliconePromptManager } = require('@helicone/helpers');

const env = process.env;
const messages = [{ role: 'user', content: 'plan a short trip' }];

async function chat(body) {
  const response = await fetch(env.MOCK_URL + '/v1/chat/completions', {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-provider-secret' },
    body: JSON.stringify(body) });
  return response;
}

// The mock's SSE stream as the chunk objects an SDK's stream yields.
async function* chunks(response) {
  const text = await response.text();
  for (const event of text.split('\n\n')) {
    const data = event.replace(/^data: /, '').trim();
    if (data && data !== '[DONE]') yield JSON.parse(data);
  }
}

async function main() {
  const logger = new HeliconeManualLogger({ apiKey: env.KEY, loggingEndpoint: env.GATEWAY_URL,
                                            headers: { 'Helicone-Property-App': 'node' } });
  const request = { model: 'gpt-4o-mini', messages };
  const answer = await logger.logRequest(request, async (recorder) => {
    const body = await (await chat(request)).json();
    recorder.appendResults(body);
    return body.choices[0].message.content;
  }, { 'Helicone-Request-Id': env.PLAIN_ID, 'Helicone-User-Id': 'node-user' }, 'OPENAI');

  const streamed = { ...request, stream: true, stream_options: { include_usage: true } };
  const builder = logger.logBuilder(streamed, { 'Helicone-Request-Id': env.STREAM_ID });
  await builder.attachStream(chunks(await chat(streamed)));
  await builder.sendLog();

  const prompts = new HeliconePromptManager({ apiKey: env.KEY, baseUrl: env.GATEWAY_URL });
  const inputs = { tone: 'calm', question: 'Where is my order?' };
  const production = await prompts.getPromptBody({ prompt_id: 'support-bot', inputs });
  const staging = await prompts.getPromptBody({ prompt_id: 'support-bot', environment: 'staging', inputs });
  console.log(JSON.stringify({ answer, production, staging }));
}
main().catch((error) => { console.error(error); process.exit(1); });
"""


@pytest.fixture(scope="module")
def node_app() -> Path:
    return node_project(NODE_DIR, "helicone-node-test", PACKAGES, SCRIPT)


def test_node_helpers_log_calls_and_read_prompts(node_app, gateway, tenant, mock_provider, client):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tenant.raw_key}"}
    for url, body in (
        ("/api/v1/prompts/", {"id": "support-bot", "name": "Support", "model": "gpt-4o-mini",
                              "messages": [{"role": "system", "content": "Be {{hc:tone:string}}."},
                                           {"role": "user", "content": "{{question}}"}]}),
        ("/api/v1/prompts/support-bot/versions/", {"model": "gpt-4o", "parameters": {"temperature": 0.1},
                                                   "messages": [{"role": "user", "content": "{{hc:question}}"}]}),
        ("/api/v1/prompts/support-bot/environments/", {"environment": "production", "version": 1}),
        ("/api/v1/prompts/support-bot/environments/", {"environment": "staging", "version": 2}),
    ):
        response = client.post(url, body, content_type="application/json", **auth)
        assert response.status_code in (200, 201), response.content
    plain_id, stream_id = "7d4f2a48-54c5-4a7e-9f8f-1c1b8f4f0a01", "7d4f2a48-54c5-4a7e-9f8f-1c1b8f4f0a02"

    result = subprocess.run(["node", str(node_app)], cwd=NODE_DIR, capture_output=True, text=True, timeout=120,
                            env={"PATH": os.environ["PATH"], "GATEWAY_URL": gateway.url, "KEY": tenant.raw_key,
                                 "MOCK_URL": mock_provider.url, "PLAIN_ID": plain_id, "STREAM_ID": stream_id})
    assert result.returncode == 0, result.stderr[-3000:]
    # The helpers print only when the log endpoint refuses a log.
    assert "Error" not in result.stderr, result.stderr[-3000:]
    said = json.loads(result.stdout.strip().splitlines()[-1])

    plain = wait_for_log(plain_id)
    assert (plain.source, plain.provider, plain.model, plain.prompt_tokens, plain.completion_tokens) == (
        "log", "openai", "gpt-4o-mini", 4, 5)
    assert plain.cost_usd == cost_usd("openai", "gpt-4o-mini", 4, 5)
    assert (plain.user_id, plain.properties) == ("node-user", {"App": "node"})
    assert json.loads(plain.response_body)["choices"][0]["message"]["content"] == said["answer"]
    streamed = wait_for_log(stream_id)
    assert (streamed.provider, streamed.streamed, streamed.prompt_tokens, streamed.completion_tokens) == (
        "custom", True, 4, 5)
    assert json.loads(streamed.response_body)["choices"][0]["message"]["content"] == said["answer"]
    assert streamed.ttft_ms is not None and 0 <= streamed.ttft_ms <= streamed.latency_ms

    production, staging = said["production"], said["staging"]
    assert production["errors"] == [] and staging["errors"] == []
    assert production["body"]["model"] == "gpt-4o-mini"
    assert production["body"]["messages"] == [{"role": "system", "content": "Be calm."},
                                              {"role": "user", "content": "Where is my order?"}]
    assert (staging["body"]["model"], staging["body"]["temperature"]) == ("gpt-4o", 0.1)
    assert staging["body"]["messages"] == [{"role": "user", "content": "Where is my order?"}]
