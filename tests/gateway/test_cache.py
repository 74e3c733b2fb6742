"""Response cache through the official SDK: hits never reach the provider, streams replay, orgs never share."""

import time
import uuid

import httpx
import openai
import pytest

from analytics.pricing import cost_usd

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

CACHE = {"Helicone-Cache-Enabled": "true"}


def client(gateway, raw_key: str, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key="sk-provider",
                         default_headers={"Helicone-Auth": f"Bearer {raw_key}", **headers}, max_retries=0)


def messages(marker: str) -> list[dict]:
    return [{"role": "user", "content": f"cache me {marker} please"}]  # 4 words -> 4 prompt tokens


def upstream_calls(mock_provider, marker: str) -> int:
    return sum(1 for r in mock_provider.requests() if marker in r["body"])


def until_hit(call, attempts: int = 50):
    """Repeat `call` until a cache hit: entries are stored in the background after the response.
    Returns (the hit, the number of misses before it)."""
    misses = 0
    for _ in range(attempts):
        raw = call()
        if raw.headers["helicone-cache"] == "HIT":
            return raw, misses
        misses += 1
        time.sleep(0.1)
    raise AssertionError("no cache hit")


def test_miss_then_hit_never_calls_upstream_and_is_logged_with_saved_cost(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    c = client(gateway, tenant.raw_key, **CACHE)
    create = lambda: c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages(marker))  # noqa: E731
    first = create()
    assert (first.headers["helicone-cache"], first.headers["helicone-cache-hit"]) == ("MISS", "false")
    hit, misses = until_hit(create)
    assert hit.headers["helicone-cache-hit"] == "true" and hit.headers["helicone-cache-bucket-idx"] == "0"
    assert hit.parse().choices[0].message.content == first.parse().choices[0].message.content
    calls = upstream_calls(mock_provider, marker)
    assert calls == 1 + misses
    for _ in range(3):
        assert create().headers["helicone-cache"] == "HIT"
    assert upstream_calls(mock_provider, marker) == calls, "a hit never calls upstream"

    log = wait_for_log(hit.headers["helicone-id"])
    assert log.cache_hit and log.status == 200 and log.model == "gpt-4o-mini"
    assert (log.prompt_tokens, log.completion_tokens) == (4, 5)
    assert log.cost_usd == cost_usd("openai", "gpt-4o-mini", 4, 5) > 0, "the cost the hit saved"
    assert log.latency_ms > 0 and hit.headers["helicone-id"] != first.headers["helicone-id"]
    assert not wait_for_log(first.headers["helicone-id"]).cache_hit


def test_streams_are_cached_and_replayed_with_the_same_events(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    body = {"model": "gpt-4o-mini", "messages": messages(marker), "stream": True}
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", **CACHE}

    def stream():
        response = httpx.post(gateway.url + "/oai/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        return response

    first = stream()
    hit, _misses = until_hit(stream)
    assert hit.content == first.content and hit.content.count(b"data:") >= 7
    assert b"[DONE]" in hit.content

    # The SDK parses the replay like any stream.
    chunks = list(client(gateway, tenant.raw_key, **CACHE).chat.completions.create(
        model="gpt-4o-mini", messages=messages(marker), stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "word1 word2 word3 word4 word5 "
    log = wait_for_log(hit.headers["helicone-id"])
    assert log.cache_hit and log.streamed and (log.prompt_tokens, log.completion_tokens) == (4, 5)
    assert "word1 word2" in log.response_body


def test_ignored_keys_share_an_entry_but_are_still_sent(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    c = client(gateway, tenant.raw_key, **CACHE, **{"Helicone-Cache-Ignore-Keys": "user,metadata"})
    first = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages(marker), user="alice")
    assert first.headers["helicone-cache"] == "MISS"
    assert [r["json"]["user"] for r in mock_provider.requests() if marker in r["body"]] == ["alice"]
    hit, _ = until_hit(lambda: c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages(marker), user=f"someone-{uuid.uuid4().hex}"))
    assert hit.headers["helicone-cache"] == "HIT"
    # Not ignored: the model is part of the key.
    other = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages(marker), user="alice")
    assert other.headers["helicone-cache"] == "MISS"


def test_seed_separates_entries(gateway, tenant):
    marker = uuid.uuid4().hex
    seeded = client(gateway, tenant.raw_key, **CACHE, **{"Helicone-Cache-Seed": "seed-a"})
    until_hit(lambda: seeded.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages(marker)))
    other = client(gateway, tenant.raw_key, **CACHE, **{"Helicone-Cache-Seed": "seed-b"})
    assert other.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages(marker)).headers["helicone-cache"] == "MISS"


def test_entries_never_hit_across_orgs(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    mine = client(gateway, tenant.raw_key, **CACHE)
    until_hit(lambda: mine.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages(marker)))
    before = upstream_calls(mock_provider, marker)
    theirs = client(gateway, tenant.other_raw_key, **CACHE).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages(marker))
    assert theirs.headers["helicone-cache"] == "MISS"
    assert upstream_calls(mock_provider, marker) == before + 1


def test_save_only_writes_and_read_only_reads(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    saver = client(gateway, tenant.raw_key, **{"Helicone-Cache-Save": "true"})
    for _ in range(2):
        raw = saver.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages(marker))
        assert raw.headers["helicone-cache"] == "MISS"  # never read
    assert upstream_calls(mock_provider, marker) == 2
    reader = client(gateway, tenant.raw_key, **{"Helicone-Cache-Read": "true"})
    hit, _ = until_hit(lambda: reader.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages(marker)))
    assert hit.headers["helicone-cache-hit"] == "true"

    # Read-only never writes.
    fresh = uuid.uuid4().hex
    for _ in range(2):
        raw = reader.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages(fresh))
        assert raw.headers["helicone-cache"] == "MISS"
        time.sleep(0.2)


def test_only_success_is_stored(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    c = client(gateway, tenant.raw_key, **CACHE, **{"X-Mock-Status": "500"})
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as info:
            c.chat.completions.create(model="gpt-4o-mini", messages=messages(marker))
        assert info.value.response.headers["helicone-cache"] == "MISS"
        time.sleep(0.2)
    assert upstream_calls(mock_provider, marker) == 3


def test_bucket_keeps_several_responses_then_serves_one_of_them(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    c = client(gateway, tenant.raw_key, **CACHE, **{"Helicone-Cache-Bucket-Max-Size": "3"})
    create = lambda: c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages(marker))  # noqa: E731
    ids = set()
    hit, misses = until_hit(lambda: (lambda raw: (ids.add(raw.parse().id), raw)[1])(create()))
    assert misses >= 3 and len(ids) >= 3, "the bucket fills with different responses first"
    served = {create().headers["helicone-cache-bucket-idx"] for _ in range(20)}
    assert served <= {"0", "1", "2"} and len(served) >= 2


def test_invalid_bucket_size_is_a_400_and_nothing_is_sent(gateway, tenant, mock_provider):
    marker = uuid.uuid4().hex
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway, tenant.raw_key, **CACHE, **{"Helicone-Cache-Bucket-Max-Size": "5000"}) \
            .chat.completions.create(model="gpt-4o-mini", messages=messages(marker))
    assert "Helicone-Cache-Bucket-Max-Size" in info.value.response.json()["error"]["message"]
    assert upstream_calls(mock_provider, marker) == 0


def test_max_age_bounds_the_lifetime(gateway, tenant):
    marker = uuid.uuid4().hex
    c = client(gateway, tenant.raw_key, **CACHE, **{"Cache-Control": "max-age=1"})
    create = lambda: c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages(marker))  # noqa: E731
    until_hit(create)
    time.sleep(2.5)
    assert create().headers["helicone-cache"] == "MISS"


def test_requests_without_cache_headers_carry_no_cache_headers(gateway, tenant):
    raw = client(gateway, tenant.raw_key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages("plain"))
    assert "helicone-cache" not in raw.headers and "helicone-ratelimit-remaining" not in raw.headers


def test_anthropic_sdk_stream_is_cached(gateway, tenant, mock_provider):
    import anthropic

    marker = uuid.uuid4().hex
    c = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key="sk-ant", max_retries=0,
                            default_headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", **CACHE})

    def create():
        with c.messages.with_streaming_response.create(
            model="claude-3-5-haiku-20241022", max_tokens=50, stream=True,
            messages=[{"role": "user", "content": f"hello {marker}"}],
        ) as response:
            response.read()
            return response

    first = create()
    hit, misses = until_hit(create)
    assert hit.headers["content-type"].startswith("text/event-stream")
    assert upstream_calls(mock_provider, marker) == 1 + misses
    with c.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=50,
                           messages=[{"role": "user", "content": f"hello {marker}"}]) as stream:
        assert stream.get_final_text() == "word1 word2 word3 word4 word5 "
    assert upstream_calls(mock_provider, marker) == 1 + misses
    log = wait_for_log(hit.headers["helicone-id"])
    assert log.cache_hit and log.provider == "anthropic" and log.completion_tokens == 5
    assert first.headers["helicone-cache"] == "MISS"
