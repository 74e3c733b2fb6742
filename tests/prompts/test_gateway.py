"""Helicone-Prompt-* at the gateway, through the official OpenAI SDK against the mock provider.

Both forms: a managed prompt made through the REST API (served by the same
daphne process), and a prompt recorded from the request's own `{{placeholders}}`.
We check what the mock received, what the log links, and the request API filters.
"""

import json
import threading

import httpx
import openai
import pytest

from orgs.models import AuditEvent
from prompts.models import Prompt, PromptVersion
from tests.gateway.conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

TEMPLATE = [
    {"role": "system", "content": "You are the assistant of {{company}}."},
    {"role": "user", "content": "{{question}} Answer in {{hc:words:number}} words."},
]
VARIABLES = {"company": "Acme", "question": "Where is my parcel?", "words": 20}


def client(gateway, tenant, **headers) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/oai/v1",
        api_key="sk-provider-secret",
        default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", **headers},
        max_retries=0,
    )


def prompt_headers(prompt_id: str, variables: dict | None = None, **extra: str) -> dict[str, str]:
    headers = {"Helicone-Prompt-Id": prompt_id, **extra}
    if variables is not None:
        headers["Helicone-Prompt-Variables"] = json.dumps(variables)
    return headers


def rest(gateway, tenant, method: str, path: str, body=None) -> httpx.Response:
    return httpx.request(method, f"{gateway.url}/api/v1/prompts/{path}", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {tenant.raw_key}"})


def make_managed_prompt(gateway, tenant) -> None:
    """support: v1 (TEMPLATE, gpt-4o-mini, temperature 0.2 / max_tokens 50), v2, v3; production -> v1, staging -> v3."""
    response = rest(gateway, tenant, "POST", "", {
        "id": "support", "name": "Support", "messages": TEMPLATE, "model": "gpt-4o-mini",
        "parameters": {"temperature": 0.2, "max_tokens": 50},
    })
    assert response.status_code == 201, response.text
    for text in ("v2 {{question}}", "v3 {{question}}"):
        response = rest(gateway, tenant, "POST", "support/versions/", {
            "messages": [{"role": "user", "content": text}], "model": "gpt-4o"})
        assert response.status_code == 201, response.text
    for env, version in (("production", 1), ("staging", 3)):
        assert rest(gateway, tenant, "POST", "support/environments/",
                    {"environment": env, "version": version}).status_code == 200


# --- A managed prompt ---------------------------------------------------------------------


def test_managed_prompt_replaces_messages_with_the_production_version(gateway, tenant, mock_provider):
    make_managed_prompt(gateway, tenant)
    mock_provider.reset()
    raw = client(gateway, tenant, **prompt_headers("support", VARIABLES)).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "ignored"}])
    assert raw.parse().choices[0].message.content

    sent = mock_provider.requests()[-1]["json"]
    assert sent["messages"] == [
        {"role": "system", "content": "You are the assistant of Acme."},
        {"role": "user", "content": "Where is my parcel? Answer in 20 words."},
    ]
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 50), "the version's parameters are defaults"
    assert not [h for h in mock_provider.requests()[-1]["headers"] if h.startswith("helicone-")]

    log = wait_for_log(raw.headers["helicone-id"])
    assert (log.prompt_id, log.prompt_version, log.prompt_variables) == ("support", 1, VARIABLES)
    assert "Where is my parcel? Answer in 20 words." in log.request_body


def test_version_and_environment_headers_choose_the_version(gateway, tenant, mock_provider):
    make_managed_prompt(gateway, tenant)
    sdk = client(gateway, tenant)
    for extra, expected_version, text in [
        ({"Helicone-Prompt-Version": "2"}, 2, "v2 Why?"),
        ({"Helicone-Prompt-Environment": "staging"}, 3, "v3 Why?"),
        ({"Helicone-Prompt-Environment": "production"}, 1, "Why? Answer in 5 words."),
    ]:
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[],
            extra_headers=prompt_headers("support", {**VARIABLES, "question": "Why?", "words": 5}, **extra))
        assert mock_provider.requests()[-1]["json"]["messages"][-1]["content"] == text
        assert wait_for_log(raw.headers["helicone-id"]).prompt_version == expected_version


def test_the_request_overrides_the_versions_model_and_parameters(gateway, tenant, mock_provider):
    make_managed_prompt(gateway, tenant)
    raw = client(gateway, tenant, **prompt_headers("support", VARIABLES)).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[], temperature=0.9)
    wait_for_log(raw.headers["helicone-id"])
    sent = mock_provider.requests()[-1]["json"]
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("gpt-4o", 0.9, 50)

    # A body without a model gets the version's.
    response = httpx.post(gateway.url + "/oai/v1/chat/completions", timeout=30, json={"messages": []}, headers={
        "Helicone-Auth": f"Bearer {tenant.raw_key}", "Authorization": "Bearer sk-provider-secret",
        **prompt_headers("support", VARIABLES)})
    assert response.status_code == 200, response.text
    wait_for_log(response.headers["helicone-id"])
    assert mock_provider.requests()[-1]["json"]["model"] == "gpt-4o-mini"


def test_managed_prompt_wins_over_placeholders_in_the_request(gateway, tenant, mock_provider):
    make_managed_prompt(gateway, tenant)
    raw = client(gateway, tenant, **prompt_headers("support", VARIABLES)).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "{{question}} from code"}])
    wait_for_log(raw.headers["helicone-id"])
    assert mock_provider.requests()[-1]["json"]["messages"][1]["content"].startswith("Where is my parcel?")
    assert PromptVersion.objects.filter(prompt__slug="support").count() == 3, "code cannot version a managed prompt"


# --- A prompt from code ---------------------------------------------------------------------


def test_placeholders_in_the_request_are_rendered_and_recorded_as_versions(gateway, tenant, mock_provider):
    sdk = client(gateway, tenant)
    template = [{"role": "user", "content": "{{user_input}}"}]

    def call(messages, variables):
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages, extra_headers=prompt_headers("chat-from-code", variables))
        return mock_provider.requests()[-1]["json"], wait_for_log(raw.headers["helicone-id"])

    sent, log = call(template, {"user_input": "hello there"})
    assert sent["messages"] == [{"role": "user", "content": "hello there"}]
    assert (log.prompt_id, log.prompt_version, log.prompt_variables) == ("chat-from-code", 1, {"user_input": "hello there"})
    prompt = Prompt.objects.get(org=tenant.org, slug="chat-from-code")
    assert prompt.source == "gateway"
    v1 = prompt.versions.get()
    assert (v1.version, v1.messages, v1.model) == (1, template, "gpt-4o-mini")
    assert v1.variables == [{"name": "user_input", "type": "any"}]

    # The same template again: no new version.
    _, log = call(template, {"user_input": "again", "extra": "ignored"})
    assert log.prompt_version == 1 and prompt.versions.count() == 1

    # A changed template: version 2; then back to the first: still version 1.
    changed = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{user_input}}"}]
    sent, log = call(changed, {"user_input": "bye"})
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "bye"}]
    assert log.prompt_version == 2 and prompt.versions.count() == 2
    _, log = call(template, {"user_input": "first again"})
    assert log.prompt_version == 1

    # The request API filters by prompt id and version.
    api = {"Authorization": f"Bearer {tenant.raw_key}"}
    items = httpx.get(gateway.url + "/api/v1/requests", headers=api, timeout=30,
                      params={"prompt_id": "chat-from-code"}).json()["items"]
    assert len(items) == 4
    items = httpx.get(gateway.url + "/api/v1/requests", headers=api, timeout=30,
                      params={"prompt_id": "chat-from-code", "prompt_version": 2}).json()["items"]
    assert [i["prompt_version"] for i in items] == [2]

    # Recording is a change: audited, with the gateway as the actor.
    events = AuditEvent.objects.filter(org=tenant.org, action__startswith="prompt.").order_by("id")
    assert [(e.action, e.changes["version"], e.changes["via"]) for e in events] == [
        ("prompt.create", 1, "gateway"), ("prompt.version.create", 2, "gateway")]


def test_a_prompt_from_code_is_served_when_a_request_has_no_placeholders(gateway, tenant, mock_provider):
    sdk = client(gateway, tenant)
    first = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say {{word}}"}],
        extra_headers=prompt_headers("say", {"word": "one"}))
    wait_for_log(first.headers["helicone-id"])
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[], extra_headers=prompt_headers("say", {"word": "two"}))
    assert mock_provider.requests()[-1]["json"]["messages"] == [{"role": "user", "content": "Say two"}]
    assert wait_for_log(raw.headers["helicone-id"]).prompt_version == 1


def test_concurrent_first_requests_record_one_version(gateway, tenant, mock_provider):
    template = [{"role": "user", "content": "Concurrent {{n}}"}]
    statuses: list[int] = []
    ids: list[str] = []

    def one(n: int) -> None:
        response = httpx.post(gateway.url + "/oai/v1/chat/completions", timeout=30,
                              json={"model": "gpt-4o-mini", "messages": template},
                              headers={"Helicone-Auth": f"Bearer {tenant.raw_key}",
                                       **prompt_headers("race", {"n": n})})
        statuses.append(response.status_code)
        ids.append(response.headers["helicone-id"])

    threads = [threading.Thread(target=one, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 12
    for log_id in ids:
        wait_for_log(log_id)
    assert Prompt.objects.filter(org=tenant.org, slug="race").count() == 1
    assert list(PromptVersion.objects.filter(prompt__slug="race").values_list("version", flat=True)) == [1]


def test_unknown_prompt_without_placeholders_passes_through_tagged(gateway, tenant, mock_provider):
    messages = [{"role": "user", "content": "plain text {not a placeholder}"}]
    raw = client(gateway, tenant, **prompt_headers("never-made", {"x": 1})).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages)
    assert mock_provider.requests()[-1]["json"]["messages"] == messages
    log = wait_for_log(raw.headers["helicone-id"])
    assert (log.prompt_id, log.prompt_version, log.prompt_variables) == ("never-made", None, {"x": 1})
    assert not Prompt.objects.filter(slug="never-made").exists()


def test_another_orgs_prompt_is_invisible(gateway, tenant, mock_provider):
    make_managed_prompt(gateway, tenant)
    other = openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key="x", max_retries=0,
                          default_headers={"Helicone-Auth": f"Bearer {tenant.other_raw_key}"})
    messages = [{"role": "user", "content": "mine"}]
    raw = other.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages,
                                                          extra_headers=prompt_headers("support", VARIABLES))
    assert wait_for_log(raw.headers["helicone-id"]).org_id == tenant.other_org.id
    assert mock_provider.requests()[-1]["json"]["messages"] == messages
    with pytest.raises(openai.BadRequestError) as exc:
        other.chat.completions.create(model="gpt-4o-mini", messages=messages, extra_headers=prompt_headers(
            "support", VARIABLES, **{"Helicone-Prompt-Version": "1"}))
    assert "no prompt 'support' in this organization" in str(exc.value)
    wait_for_log(exc.value.response.headers["helicone-id"])


# --- Bad variables and headers ------------------------------------------------------------


@pytest.mark.parametrize("variables, extra, message", [
    ({"company": "Acme", "words": 3}, {}, "Helicone-Prompt-Variables: missing variable 'question'"),
    (None, {}, "Helicone-Prompt-Variables: missing variable 'company'"),
    ({**VARIABLES, "words": "twenty"}, {}, "Helicone-Prompt-Variables: variable 'words' must be a number"),
    (VARIABLES, {"Helicone-Prompt-Version": "9"}, "Helicone-Prompt-Version: prompt 'support' has no version 9"),
    (VARIABLES, {"Helicone-Prompt-Environment": "qa"},
     "Helicone-Prompt-Environment: prompt 'support' has no environment 'qa'"),
    (VARIABLES, {"Helicone-Prompt-Version": "1", "Helicone-Prompt-Environment": "staging"}, "not both"),
])
def test_bad_prompt_requests_are_400_and_never_reach_upstream(gateway, tenant, mock_provider, variables, extra,
                                                              message):
    make_managed_prompt(gateway, tenant)
    mock_provider.reset()
    with pytest.raises(openai.BadRequestError) as exc:
        client(gateway, tenant, **prompt_headers("support", variables, **extra)).chat.completions.create(
            model="gpt-4o-mini", messages=[])
    assert message in exc.value.response.json()["error"]["message"]
    assert mock_provider.requests() == []
    log = wait_for_log(exc.value.response.headers["helicone-id"])
    assert log.status == 400 and message in log.error


def test_bad_variables_for_a_prompt_from_code_record_nothing(gateway, tenant, mock_provider):
    mock_provider.reset()
    for variables, message in [
        ({}, "Helicone-Prompt-Variables: missing variable 'user_input'"),
        ({"user_input": "x", "n": "lots"}, "Helicone-Prompt-Variables: variable 'n' must be a number"),
    ]:
        with pytest.raises(openai.BadRequestError) as exc:
            client(gateway, tenant).chat.completions.create(
                model="gpt-4o-mini", extra_headers=prompt_headers("bad", variables),
                messages=[{"role": "user", "content": "{{user_input}} x{{hc:n:number}}"}])
        assert message in str(exc.value)
        wait_for_log(exc.value.response.headers["helicone-id"])
    assert mock_provider.requests() == []
    assert not Prompt.objects.filter(slug="bad").exists()


def test_malformed_variables_header_is_400_naming_it(gateway, tenant, mock_provider):
    response = httpx.post(gateway.url + "/oai/v1/chat/completions", timeout=30,
                          json={"model": "gpt-4o-mini", "messages": []},
                          headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "Helicone-Prompt-Id": "x",
                                   "Helicone-Prompt-Variables": "[1, 2]"})
    assert response.status_code == 400
    assert "Helicone-Prompt-Variables" in response.json()["error"]["message"]
    wait_for_log(response.headers["helicone-id"])
