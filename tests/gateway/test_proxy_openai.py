"""OpenAI through the gateway with the official SDK: every call type, plain and streamed, logged."""

import uuid
from decimal import Decimal

import httpx
import openai
import pytest

from analytics.pricing import cost_usd

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "tell me a short story"}]  # 5 words -> 5 prompt tokens at the mock


def client(gateway, tenant, **headers) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/oai/v1",
        api_key="sk-provider-secret",
        default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", **headers},
        max_retries=0,
    )


def test_chat_completion_is_proxied_and_logged_with_tags(gateway, tenant, mock_provider):
    mock_provider.reset()
    raw = client(
        gateway, tenant,
        **{"Helicone-User-Id": "user-42", "Helicone-Session-Id": "sess-1", "Helicone-Session-Path": "/plan/step",
           "Helicone-Session-Name": "Trip", "Helicone-Property-Feature": "chat", "Helicone-Request-Name": "greet"},
    ).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content
    log = wait_for_log(raw.headers["helicone-id"])

    assert log.org_id == tenant.org.id and log.api_key_id == tenant.key.id
    assert (log.provider, log.model, log.status, log.streamed) == ("openai", "gpt-4o-mini", 200, False)
    assert (log.prompt_tokens, log.completion_tokens) == (5, 5)
    assert log.cost_usd == cost_usd("openai", "gpt-4o-mini", 5, 5) and log.cost_usd > 0
    assert log.latency_ms > 0
    assert (log.user_id, log.session_id, log.session_path, log.session_name) == ("user-42", "sess-1", "/plan/step", "Trip")
    assert log.properties == {"Feature": "chat"}
    assert log.request_name == "greet"
    assert '"tell me a short story"' in log.request_body
    assert completion.choices[0].message.content in log.response_body

    upstream = mock_provider.requests()[-1]
    assert upstream["headers"]["authorization"] == "Bearer sk-provider-secret"
    assert not [h for h in upstream["headers"] if h.startswith("helicone-")]
    # Credentials are forwarded but never stored.
    assert "sk-provider-secret" not in str(log.request_headers) and tenant.raw_key not in str(log.request_headers)


def test_streamed_chat_counts_usage_the_client_did_not_ask_for(gateway, tenant, mock_provider):
    mock_provider.reset()
    request_id = str(uuid.uuid4())
    stream = client(gateway, tenant, **{"Helicone-Request-Id": request_id}).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.usage is None for c in chunks), "the usage chunk the gateway asked for must not reach the client"
    assert mock_provider.requests()[-1]["json"]["stream_options"] == {"include_usage": True}

    log = wait_for_log(request_id)
    assert log.streamed and log.status == 200 and not log.error
    assert (log.prompt_tokens, log.completion_tokens) == (5, 5)
    assert log.cost_usd == cost_usd("openai", "gpt-4o-mini", 5, 5)
    assert 0 < log.ttft_ms <= log.latency_ms
    assert text in log.response_body
    assert "stream_options" not in log.request_body, "the log keeps the body the client sent"


def test_streamed_chat_keeps_usage_chunk_the_client_asked_for(gateway, tenant):
    stream = client(gateway, tenant).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    usages = [c.usage for c in stream if c.usage is not None]
    assert len(usages) == 1 and usages[0].prompt_tokens == 5


def test_completions_and_embeddings(gateway, tenant):
    c = client(gateway, tenant)
    raw = c.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="one two three")
    log = wait_for_log(raw.headers["helicone-id"])
    assert (log.prompt_tokens, log.completion_tokens, log.path) == (3, 5, "/v1/completions")

    streamed = list(c.completions.create(model="gpt-3.5-turbo-instruct", prompt="one two", stream=True))
    assert streamed

    raw = c.embeddings.with_raw_response.create(model="text-embedding-3-small", input="a b c d")
    embedding = raw.parse()
    assert len(embedding.data[0].embedding) == 8
    log = wait_for_log(raw.headers["helicone-id"])
    assert log.prompt_tokens == 4 and log.model == "text-embedding-3-small"
    assert log.cost_usd == cost_usd("openai", "text-embedding-3-small", 4, 0)


def test_models_list_passes_through_with_query_string(gateway, tenant, mock_provider):
    mock_provider.reset()
    response = httpx.get(gateway.url + "/oai/v1/models?limit=2",
                         headers={"Helicone-Auth": f"Bearer {tenant.raw_key}"})
    assert response.status_code == 200 and response.json()["data"]
    assert mock_provider.requests()[-1]["path"] == "/v1/models?limit=2"
    log = wait_for_log(response.headers["helicone-id"])
    assert log.method == "GET" and log.cost_usd is None


def test_omit_headers_keep_metrics_but_not_bodies(gateway, tenant):
    raw = client(gateway, tenant, **{"Helicone-Omit-Request": "true", "Helicone-Omit-Response": "true"}) \
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    log = wait_for_log(raw.headers["helicone-id"])
    assert log.request_body == "" and log.response_body == ""
    assert log.request_omitted and log.response_omitted
    assert log.prompt_tokens == 5 and log.cost_usd is not None


def test_model_override_prices_with_the_given_model(gateway, tenant):
    raw = client(gateway, tenant, **{"Helicone-Model-Override": "gpt-4o"}) \
        .chat.completions.with_raw_response.create(model="my-finetune", messages=MESSAGES)
    log = wait_for_log(raw.headers["helicone-id"])
    assert log.model == "gpt-4o" and log.requested_model == "my-finetune"
    assert log.cost_usd == cost_usd("openai", "gpt-4o", 5, 5)


def test_unpriced_model_has_null_cost_never_zero(gateway, tenant):
    raw = client(gateway, tenant).chat.completions.with_raw_response.create(model="mock-unknown-model", messages=MESSAGES)
    log = wait_for_log(raw.headers["helicone-id"])
    assert log.cost_usd is None and log.prompt_tokens == 5


def test_operator_price_wins_over_bundled_prices(gateway, tenant):
    from analytics.models import ModelPrice

    ModelPrice.objects.create(provider="", model="mock-priced-model", input_per_mtok=Decimal("1000000"),
                              output_per_mtok=Decimal("2000000"))
    raw = client(gateway, tenant).chat.completions.with_raw_response.create(model="mock-priced-model", messages=MESSAGES)
    log = wait_for_log(raw.headers["helicone-id"])
    assert log.cost_usd == Decimal("15")  # 5 * $1 + 5 * $2


def test_upstream_errors_reach_the_client_as_sent_and_are_logged(gateway, tenant):
    with pytest.raises(openai.RateLimitError) as info:
        client(gateway, tenant, **{"X-Mock-Status": "429"}).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    response = info.value.response
    assert response.status_code == 429 and "error" in response.json()
    log = wait_for_log(response.headers["helicone-id"])
    assert log.status == 429 and log.error


def test_named_route_forwards_to_its_upstream(gateway, tenant, mock_provider):
    mock_provider.reset()
    groq = openai.OpenAI(base_url=gateway.url + "/groq/v1", api_key="gsk",
                         default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}"}, max_retries=0)
    raw = groq.chat.completions.with_raw_response.create(model="llama-3.1-8b-instant", messages=MESSAGES)
    assert mock_provider.requests()[-1]["path"] == "/v1/chat/completions"
    assert wait_for_log(raw.headers["helicone-id"]).provider == "groq"


def test_generic_gateway_route_uses_target_url(gateway, tenant, mock_provider):
    mock_provider.reset()
    custom = openai.OpenAI(
        base_url=gateway.url + "/gateway/v1", api_key="x", max_retries=0,
        default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "Helicone-Target-Url": mock_provider.url},
    )
    raw = custom.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.status_code == 200
    assert mock_provider.requests()[-1]["path"] == "/v1/chat/completions"
    log = wait_for_log(raw.headers["helicone-id"])
    assert log.provider == "custom" and log.target_url == mock_provider.url + "/v1/chat/completions"


def test_azure_through_openai_api_base(gateway, tenant, mock_provider):
    mock_provider.reset()
    azure = openai.AzureOpenAI(
        azure_endpoint=gateway.url + "/oai/v1", api_key="azure-key", api_version="2024-10-21", max_retries=0,
        default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "Helicone-OpenAI-Api-Base": mock_provider.url},
    )
    raw = azure.chat.completions.with_raw_response.create(model="my-deployment", messages=MESSAGES)
    assert raw.status_code == 200
    received = mock_provider.requests()[-1]
    assert received["path"].startswith("/openai/deployments/my-deployment/chat/completions?api-version=")
    assert received["headers"]["api-key"] == "azure-key"
    log = wait_for_log(raw.headers["helicone-id"])
    assert log.prompt_tokens == 5
