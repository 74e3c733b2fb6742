"""`HeliconePromptManager` (helicone-helpers) reads our prompts through Helicone's prompt-2025 routes and
the signed body URL they answer with, against a daphne serving the project."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from django.core import signing
from helicone_helpers import HeliconePromptManager

from orgs.models import ApiKey
from prompts import helicone as prompt_routes

pytestmark = pytest.mark.django_db(transaction=True)

V1 = [{"role": "system", "content": "You are {{hc:tone:string}} support for {{product}}."},
      {"role": "user", "content": "Question: {{hc:question:string}} ({{hc:count:number}} so far)"}]
V2 = [{"role": "system", "content": "Answer as {{hc:tone:string}} {{product}} staff."},
      {"role": "user", "content": "{{hc:question:string}}"}]
INPUTS = {"tone": "friendly", "product": "Acme", "question": "Where is my order?", "count": 2}


@pytest.fixture
def prompt(tenant, client):
    """support-bot: version 1 in production, version 2 in staging (made through our prompts API)."""
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tenant.raw_key}"}
    response = client.post("/api/v1/prompts/", {"id": "support-bot", "name": "Support bot", "messages": V1,
                                                 "model": "gpt-4o-mini", "parameters": {"temperature": 0.2},
                                                 "message": "first"}, content_type="application/json", **auth)
    assert response.status_code == 201, response.content
    response = client.post("/api/v1/prompts/support-bot/versions/", {
        "messages": V2, "model": "gpt-4o", "parameters": {"max_tokens": 300}, "message": "shorter"},
        content_type="application/json", **auth)
    assert response.status_code == 201, response.content
    for environment, version in (("production", 1), ("staging", 2)):
        response = client.post("/api/v1/prompts/support-bot/environments/",
                               {"environment": environment, "version": version},
                               content_type="application/json", **auth)
        assert response.status_code == 200, response.content

    def rendered(**choice) -> list[dict]:
        response = client.post("/api/v1/prompts/support-bot/render/", {"variables": INPUTS, **choice},
                               content_type="application/json", **auth)
        assert response.status_code == 200, response.content
        return response.json()["messages"]

    return rendered


def test_get_prompt_body_for_a_version_production_and_an_environment(gateway, tenant, prompt):
    manager = HeliconePromptManager(api_key=tenant.raw_key, base_url=gateway.url)
    production = manager.get_prompt_body({"prompt_id": "support-bot", "inputs": INPUTS,
                                          "messages": [{"role": "user", "content": "and thanks"}]})
    assert production["errors"] == []
    body = production["body"]
    assert (body["model"], body["temperature"]) == ("gpt-4o-mini", 0.2)
    # The stored messages filled in by the helper, as our own render API fills them; the app's own
    # messages follow.
    assert body["messages"] == prompt(environment="production") + [{"role": "user", "content": "and thanks"}]
    assert body["messages"][0]["content"] == "You are friendly support for Acme."

    by_version = manager.get_prompt_body({"prompt_id": "support-bot", "version_id": "support-bot:2",
                                          "inputs": INPUTS})
    staging = manager.get_prompt_body({"prompt_id": "support-bot", "environment": "staging", "inputs": INPUTS})
    for compiled in (by_version, staging):
        assert compiled["errors"] == []
        assert compiled["body"]["messages"] == prompt(version=2)
        assert (compiled["body"]["model"], compiled["body"]["max_tokens"]) == ("gpt-4o", 300)

    async def asynchronously():
        async with HeliconePromptManager(api_key=tenant.raw_key, base_url=gateway.url) as manager:
            return await manager.aget_prompt_body({"prompt_id": "support-bot", "environment": "staging",
                                                   "inputs": INPUTS})

    assert asyncio.run(asynchronously()) == staging
    # The helper checks the declared types against the inputs: the types survived the trip.
    wrong = manager.get_prompt_body({"prompt_id": "support-bot", "inputs": {**INPUTS, "count": "two"}})
    assert [(error.variable, error.expected) for error in wrong["errors"]] == [("count", "number")]


def test_version_answers_carry_helicones_keys(gateway, tenant, prompt):
    manager = HeliconePromptManager(api_key=tenant.raw_key, base_url=gateway.url)
    version = manager.pull_prompt_version({"prompt_id": "support-bot"})
    assert (version.id, version.prompt_id, version.major_version, version.minor_version, version.model,
            version.commit_message) == ("support-bot:1", "support-bot", 1, 0, "gpt-4o-mini", "first")
    assert version.created_at and version.s3_url.startswith(gateway.url + "/v1/prompt-2025/body/")
    answer = httpx.post(gateway.url + "/v1/prompt-2025/query/environment-version",
                        json={"promptId": "support-bot", "environment": "staging"},
                        headers={"Authorization": f"Bearer {tenant.raw_key}"}).json()
    assert answer["error"] is None
    assert (answer["data"]["id"], answer["data"]["environment"], answer["data"]["environments"]) == (
        "support-bot:2", "staging", ["staging"])
    # The body link needs no key, and stores Helicone's placeholders.
    body = httpx.get(version.s3_url).json()
    assert body["messages"][0]["content"] == "You are {{hc:tone:string}} support for {{hc:product:any}}."


def test_unknown_prompts_versions_and_environments_and_other_orgs(gateway, tenant, prompt, capsys):
    manager = HeliconePromptManager(api_key=tenant.raw_key, base_url=gateway.url)
    cases = [({"prompt_id": "nope"}, "No such prompt"),
             ({"prompt_id": "support-bot", "version_id": "support-bot:9"}, "has no version 9"),
             ({"prompt_id": "support-bot", "version_id": "3f2c"}, "<prompt id>:<version number>"),
             ({"prompt_id": "support-bot", "environment": "dev"}, "has no environment 'dev'")]
    for params, words in cases:
        with pytest.raises(Exception, match=words):
            manager.get_prompt_body(params)
    outsider = HeliconePromptManager(api_key=tenant.other_raw_key, base_url=gateway.url)
    with pytest.raises(Exception, match="No such prompt"):
        outsider.get_prompt_body({"prompt_id": "support-bot"})
    _, proxy_only = ApiKey.generate(tenant.org, "proxy", ["proxy"])
    response = httpx.post(gateway.url + "/v1/prompt-2025/query/production-version", json={"promptId": "support-bot"},
                          headers={"Authorization": f"Bearer {proxy_only}"})
    assert response.status_code == 403 and response.json() == {
        "data": None, "error": "This API key lacks the 'read' scope"}


def test_body_links_are_signed_and_expire(gateway, tenant, prompt):
    manager = HeliconePromptManager(api_key=tenant.raw_key, base_url=gateway.url)
    url = manager.pull_prompt_version({"prompt_id": "support-bot"}).s3_url
    assert httpx.get(url).status_code == 200
    token = url.rsplit("/", 1)[1]
    response = httpx.get(url[: -len(token)] + token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    assert response.status_code == 404 and response.json()["data"] is None

    class Earlier(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time()) - prompt_routes.BODY_URL_SECONDS - 5)

    old = Earlier(salt=prompt_routes._SALT).sign_object(signing.loads(token, salt=prompt_routes._SALT),
                                                         compress=True)
    response = httpx.get(url[: -len(token)] + old)
    assert response.status_code == 403 and "expired" in response.json()["error"]
