"""The semantic cache through a real daphne: paraphrases served, different questions never, no entry
visible outside its scope, shadow mode, the org's settings, eviction, retention and erase.

The evaluation suite (semantic_suite.json: opposite-meaning pairs and paraphrase pairs written for
the project) runs here end to end: each pair in a scope of its own, the first text asked and
cached, then the second asked."""

import json
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from analytics import lifecycle
from analytics.models import Feedback, RequestLog, SemanticEntry
from orgs import actions
from orgs.models import ApiKey

from .conftest import wait_for_log

pytestmark = pytest.mark.django_db(transaction=True)

SUITE = json.loads((Path(__file__).parent / "semantic_suite.json").read_text())
SEMANTIC = {"Helicone-Cache-Enabled": "true", "Helicone-Cache-Semantic": "true"}


@pytest.fixture
def http():
    with httpx.Client(timeout=30) as client:
        yield client


def ask(http, gateway, raw_key: str, text: str, *, seed: str, headers: dict | None = None,
        body: dict | None = None, path: str = "/oai/v1/chat/completions", messages: list | None = None):
    payload = {"model": "gpt-4o-mini", "messages": [*(messages or []), {"role": "user", "content": text}],
               **(body or {})}
    sent = {"Helicone-Auth": f"Bearer {raw_key}", **SEMANTIC, "Helicone-Cache-Seed": seed, **(headers or {})}
    return http.post(gateway.url + path, json=payload, headers=sent)


def cached(response, timeout: float = 10.0) -> str:
    """Wait until the question of this (missed) request is a semantic entry; returns its request id."""
    assert response.status_code == 200, response.text
    assert response.headers["helicone-cache"] == "MISS"
    request_id = response.headers["helicone-id"]
    deadline = time.monotonic() + timeout
    while not SemanticEntry.objects.filter(source_request_id=request_id).exists():
        assert time.monotonic() < deadline, "the semantic entry was not stored"
        time.sleep(0.02)
    time.sleep(0.05)  # the serving process adds it to its own copy of the scope right after
    return request_id


def is_semantic_hit(response) -> bool:
    assert response.status_code == 200, response.text
    return response.headers["helicone-cache"] == "HIT" and response.headers.get("helicone-cache-match") == "semantic"


def test_the_suite_serves_paraphrases_and_never_a_different_question(gateway, tenant, http):
    """0 false hits over the opposite-meaning pairs; at least 40 % of paraphrases served."""
    assert len(SUITE["opposite"]) >= 100 and len(SUITE["paraphrase"]) >= 100
    false_hits, served = [], []
    for kind in ("opposite", "paraphrase"):
        for index, pair in enumerate(SUITE[kind]):
            seed = f"{kind}-{index}-{uuid.uuid4().hex[:8]}"
            source = cached(ask(http, gateway, tenant.raw_key, pair["a"], seed=seed))
            second = ask(http, gateway, tenant.raw_key, pair["b"], seed=seed)
            if is_semantic_hit(second):
                assert second.headers["helicone-cache-source-id"] == source
                (false_hits if kind == "opposite" else served).append(pair)
    assert false_hits == [], f"{len(false_hits)} different questions served a cached answer: {false_hits[:5]}"
    share = len(served) / len(SUITE["paraphrase"])
    print(f"semantic suite: 0 / {len(SUITE['opposite'])} false hits, {len(served)} / {len(SUITE['paraphrase'])} "
          f"paraphrases served ({share:.0%})")
    assert share >= 0.40


def test_a_semantic_hit_answers_as_the_source_did_and_is_logged(gateway, tenant, http, mock_provider, client):
    seed = uuid.uuid4().hex
    first = ask(http, gateway, tenant.raw_key, "How do I reverse a list in Python?", seed=seed)
    source = cached(first)
    calls = len(mock_provider.requests())
    hit = ask(http, gateway, tenant.raw_key, "how do i reverse a list in python", seed=seed)
    assert is_semantic_hit(hit) and hit.json() == first.json()
    assert hit.headers["helicone-cache-source-id"] == source
    similarity = float(hit.headers["helicone-cache-similarity"])
    assert 0.9 <= similarity <= 1.0 and len(hit.headers["helicone-cache-similarity"]) == 5  # "0.934"
    assert len(mock_provider.requests()) == calls, "a semantic hit never calls the provider"
    log = wait_for_log(hit.headers["helicone-id"])
    assert (log.cache_hit, log.cache_match, str(log.source_request_id)) == (True, "semantic", source)
    assert log.similarity == pytest.approx(similarity, abs=0.001)
    assert log.cost_usd > 0, "the cost the hit saved"
    client.force_login(tenant.user)
    page = client.get(f"/o/{tenant.org.slug}/requests/{log.id}/").content.decode()
    outcome = page.split('id="cache-outcome">')[1].split("</dd>")[0]
    assert "semantic hit" in outcome and f"/o/{tenant.org.slug}/requests/{source}/" in outcome
    exact = ask(http, gateway, tenant.raw_key, "How do I reverse a list in Python?", seed=seed)
    assert exact.headers["helicone-cache"] == "HIT" and exact.headers["helicone-cache-match"] == "exact"
    assert exact.headers["helicone-cache-source-id"] == source
    assert wait_for_log(exact.headers["helicone-id"]).cache_match == "exact"
    # The dashboard splits the two kinds of hits and what each saved.
    split = client.get(f"/o/{tenant.org.slug}/?range=1h").context["cache_split"]
    assert (split["exact_hits"], split["semantic_hits"]) == (1, 1)
    assert split["semantic_saved_usd"] == pytest.approx(float(log.cost_usd))


def test_nothing_is_shared_outside_the_scope(gateway, tenant, http):
    """Orgs, keys, users, models, parameters, system prompts and histories each have their own entries."""
    seed = uuid.uuid4().hex
    question, paraphrase = "What is the capital of France?", "what's the capital of france"
    cached(ask(http, gateway, tenant.raw_key, question, seed=seed))
    assert is_semantic_hit(ask(http, gateway, tenant.raw_key, paraphrase, seed=seed))

    other_key_of_same_org = ApiKey.generate(tenant.org, "second", ["proxy"])[1]
    variants = {
        "another org": dict(raw_key=tenant.other_raw_key),
        "another key": dict(raw_key=other_key_of_same_org),
        "another model": dict(body={"model": "gpt-4o"}),
        "another temperature": dict(body={"temperature": 0.2}),
        "a system prompt": dict(messages=[{"role": "system", "content": "Answer in French."}]),
        "a history": dict(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]),
        "another seed": dict(seed=seed + "-x"),
        "a stream": dict(body={"stream": True}),
    }
    for name, variant in variants.items():
        raw_key = variant.pop("raw_key", tenant.raw_key)
        response = ask(http, gateway, raw_key, paraphrase, seed=variant.pop("seed", seed), **variant)
        assert response.status_code == 200, (name, response.text)
        assert response.headers["helicone-cache"] == "MISS", f"{name} was served another scope's answer"

    # Per user: two users of one key never share; the same user does.
    user_seed = uuid.uuid4().hex
    alice = {"Helicone-User-Id": "alice", "Helicone-Cache-Semantic-Scope": "user"}
    cached(ask(http, gateway, tenant.raw_key, question, seed=user_seed, headers=alice))
    bob = {"Helicone-User-Id": "bob", "Helicone-Cache-Semantic-Scope": "user"}
    # (Another text than alice's below: the exact tier is per org, as at Helicone; the scope is the semantic tier's.)
    assert ask(http, gateway, tenant.raw_key, "What is the capital of France??", seed=user_seed,
               headers=bob).headers["helicone-cache"] == "MISS"
    assert is_semantic_hit(ask(http, gateway, tenant.raw_key, paraphrase, seed=user_seed, headers=alice))


def test_bad_semantic_headers_are_a_400_naming_the_header(gateway, tenant, http):
    seed = uuid.uuid4().hex
    cases = [
        ({"Helicone-Cache-Enabled": "false"}, "Helicone-Cache-Semantic"),
        ({"Helicone-Cache-Semantic": "maybe"}, "Helicone-Cache-Semantic"),
        ({"Helicone-Cache-Semantic-Threshold": "1.5"}, "Helicone-Cache-Semantic-Threshold"),
        ({"Helicone-Cache-Semantic-Scope": "team"}, "Helicone-Cache-Semantic-Scope"),
        ({"Helicone-Cache-Semantic-Scope": "user"}, "Helicone-User-Id"),
        ({"Helicone-Cache-Semantic-Scope": "org"}, "not allowed"),
    ]
    for headers, named in cases:
        response = ask(http, gateway, tenant.raw_key, "What is 2 + 2?", seed=seed, headers=headers)
        assert response.status_code == 400 and named in response.json()["error"]["message"], (headers, response.text)
    assert not SemanticEntry.objects.exists()


def test_org_scope_once_allowed_and_the_floor_a_request_may_only_raise(gateway, tenant, http):
    actions.set_semantic_cache(tenant.org, actor=tenant.user, threshold=0.9, org_scope=True)
    # Keys the gateway has not seen yet: their lookup reads the new settings.
    first_key, second_key = (ApiKey.generate(tenant.org, name, ["proxy"])[1] for name in ("first", "second"))
    seed = uuid.uuid4().hex
    org_wide = {"Helicone-Cache-Semantic-Scope": "org"}
    cached(ask(http, gateway, first_key, "How do I reverse a list in Python?", seed=seed, headers=org_wide))
    strict = {**org_wide, "Helicone-Cache-Semantic-Threshold": "0.999"}
    assert ask(http, gateway, second_key, "How can I reverse a list in Python?", seed=seed,
               headers=strict).headers["helicone-cache"] == "MISS"
    lenient = {**org_wide, "Helicone-Cache-Semantic-Threshold": "0.1"}  # below the floor: the floor applies
    hit = ask(http, gateway, second_key, "How could I reverse a list in Python?", seed=seed, headers=lenient)
    assert is_semantic_hit(hit) and float(hit.headers["helicone-cache-similarity"]) >= 0.9


def test_shadow_mode_calls_the_provider_and_records_the_candidate(gateway, tenant, http, mock_provider, client):
    seed = uuid.uuid4().hex
    shadow = {"Helicone-Cache-Semantic": "shadow"}
    source = cached(ask(http, gateway, tenant.raw_key, "How do I reverse a list in Python?", seed=seed, headers=shadow))
    calls = len(mock_provider.requests())
    response = ask(http, gateway, tenant.raw_key, "how do I reverse a list in python", seed=seed, headers=shadow)
    assert response.headers["helicone-cache"] == "MISS" and len(mock_provider.requests()) == calls + 1
    log = wait_for_log(response.headers["helicone-id"])
    assert (log.cache_hit, log.cache_match, str(log.source_request_id)) == (False, "shadow", source)
    assert 0.8 <= log.similarity <= 1.0

    client.force_login(tenant.user)
    page = client.get(f"/o/{tenant.org.slug}/?range=1h").content.decode()
    assert "Shadow mode" in page and 'id="shadow-thresholds"' in page
    rows = page.split('id="shadow-thresholds"')[1].split("</table>")[0]
    assert f"≥ {0.80:.2f}" in rows and "(your floor)" in rows


def test_thumbs_down_on_a_semantic_hit_evicts_its_source_entry(gateway, tenant, http):
    seed = uuid.uuid4().hex
    source = cached(ask(http, gateway, tenant.raw_key, "Summarise the plot of Hamlet", seed=seed))
    hit = ask(http, gateway, tenant.raw_key, "summarise the plot of Hamlet.", seed=seed)
    assert is_semantic_hit(hit)
    wait_for_log(hit.headers["helicone-id"])
    response = http.post(f"{gateway.url}/api/v1/requests/{hit.headers['helicone-id']}/feedback",
                         json={"rating": False}, headers={"Authorization": f"Bearer {tenant.raw_key}"})
    assert response.status_code == 200, response.text
    assert Feedback.objects.get(request_id=hit.headers["helicone-id"]).rating is False
    assert not SemanticEntry.objects.filter(source_request_id=source).exists()
    again = ask(http, gateway, tenant.raw_key, "Summarise the plot of Hamlet, please", seed=seed)
    assert again.headers["helicone-cache"] == "MISS", "the evicted entry is never served again"


def test_a_dangling_pointer_is_a_miss(gateway, tenant, http):
    seed = uuid.uuid4().hex
    short = {"Cache-Control": "max-age=1"}
    cached(ask(http, gateway, tenant.raw_key, "Name three primary colours", seed=seed, headers=short))
    assert is_semantic_hit(ask(http, gateway, tenant.raw_key, "name three primary colours", seed=seed))
    time.sleep(1.3)  # the exact entry holding the answer expired
    assert ask(http, gateway, tenant.raw_key, "name three primary colours", seed=seed).headers["helicone-cache"] == "MISS"


def test_streams_replay_as_streams(gateway, tenant, http):
    seed = uuid.uuid4().hex
    stream = {"stream": True}
    first = ask(http, gateway, tenant.raw_key, "Write a haiku about autumn", seed=seed, body=stream)
    cached(first)
    hit = ask(http, gateway, tenant.raw_key, "write a haiku about autumn!", seed=seed, body=stream)
    assert is_semantic_hit(hit) and hit.headers["content-type"].startswith("text/event-stream")
    assert hit.content == first.content and hit.content.count(b"data:") >= 3


def test_anthropic_messages_and_responses_api_through_the_sdks(gateway, tenant):
    import anthropic

    seed = uuid.uuid4().hex
    headers = {"Helicone-Auth": f"Bearer {tenant.raw_key}", **SEMANTIC, "Helicone-Cache-Seed": seed}
    claude = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key="sk-ant", default_headers=headers,
                                 max_retries=0)
    ask_claude = lambda text: claude.messages.with_raw_response.create(  # noqa: E731
        model="claude-3-5-haiku-latest", max_tokens=50, messages=[{"role": "user", "content": text}])
    first = ask_claude("What does HTTP status 418 mean?")
    source = cached(first.http_response)
    hit = ask_claude("what does http status 418 mean")
    assert hit.headers["helicone-cache-match"] == "semantic" and hit.headers["helicone-cache-source-id"] == source
    assert hit.parse().content[0].text == first.parse().content[0].text

    oai = openai.OpenAI(base_url=gateway.url + "/oai/v1", api_key="sk-provider", default_headers=headers,
                        max_retries=0)
    first = oai.responses.with_raw_response.create(model="gpt-4o-mini", input="Explain what a mutex is")
    cached(first.http_response)
    hit = oai.responses.with_raw_response.create(model="gpt-4o-mini", input="explain what a mutex is.")
    assert hit.headers["helicone-cache-match"] == "semantic"
    differs = oai.responses.with_raw_response.create(model="gpt-4o-mini", input="Explain what a semaphore is")
    assert differs.headers["helicone-cache"] == "MISS"


def test_retention_purge_and_erase_delete_the_entries(gateway, tenant, http):
    seed = uuid.uuid4().hex
    carol = {"Helicone-User-Id": "carol"}
    cached(ask(http, gateway, tenant.raw_key, "What is the boiling point of water?", seed=seed, headers=carol))
    kept = cached(ask(http, gateway, tenant.raw_key, "What is the melting point of iron?", seed=seed))
    erased = http.delete(f"{gateway.url}/api/v1/users/carol", headers={"Authorization": f"Bearer {tenant.raw_key}"})
    assert erased.status_code == 200 and erased.json()["semantic_cache_entries"] == 1, erased.text
    assert list(SemanticEntry.objects.values_list("user_id", flat=True)) == [""]
    assert ask(http, gateway, tenant.raw_key, "what is the boiling point of water", seed=seed,
               headers=carol).headers["helicone-cache"] == "MISS", "an erased user's question is never served"

    tenant.org.retention_days = 1
    tenant.org.save()
    SemanticEntry.objects.filter(source_request_id=kept).update(created_at="2000-01-01T00:00:00Z")
    RequestLog.objects.filter(id=kept).update(created_at="2000-01-01T00:00:00Z")
    lifecycle.purge(lifecycle.purge_plan(tenant.org))
    assert not SemanticEntry.objects.filter(source_request_id=kept).exists()


def test_the_settings_page_is_for_admins_validated_and_audited(tenant, client):
    from orgs.models import AuditEvent, Membership, Role, User

    url = f"/o/{tenant.org.slug}/settings/semantic-cache/"
    member = User.objects.create_user("member@example.org", "pw-123456789")
    Membership.objects.create(org=tenant.org, user=member, role=Role.MEMBER)
    client.force_login(member)
    assert client.get(url).status_code == 403
    client.force_login(tenant.user)
    assert client.get(url).status_code == 200
    bad = client.post(url, {"semantic_cache_threshold": "0.2"})
    assert bad.status_code == 400 and "greater than or equal to 0.5" in bad.content.decode()
    assert client.post(url, {"semantic_cache_threshold": "0.95", "semantic_cache_org_scope": "on"}).status_code == 302
    tenant.org.refresh_from_db()
    assert (tenant.org.semantic_cache_threshold, tenant.org.semantic_cache_org_scope) == (0.95, True)
    event = AuditEvent.objects.get(action="org.semantic_cache")
    assert event.changes == {"semantic_cache_threshold": [0.9, 0.95], "semantic_cache_org_scope": [False, True]}


def test_the_caps_keep_the_newest_per_scope_and_the_most_recently_hit_per_org(tenant, monkeypatch):
    from analytics import semantic_store

    monkeypatch.setattr(semantic_store, "SCOPE_CAP", 3)
    scope = uuid.uuid4().hex * 2  # the version counters outlive a test's database (Redis)
    ids, versions = [], []
    for i in range(5):
        entry_id, version = semantic_store.add_entry(
            org_id=tenant.org.id, scope=scope, text=f"question {i}", vector=b"\0" * 1024, cache_key=f"gw:k{i}",
            bucket_size=1, source_request_id=str(uuid.uuid4()), user_id="", seconds=60)
        ids.append(entry_id)
        versions.append(version)
    assert versions == list(range(versions[0], versions[0] + 5)), "every insert moves the scope's version on"
    kept = list(SemanticEntry.objects.order_by("id").values_list("id", flat=True))
    assert kept == ids[2:], "the 3 newest of the scope"
    assert [e.text for e in semantic_store.load_scope(tenant.org.id, scope)] == ["question 4", "question 3",
                                                                                "question 2"]
    semantic_store.touch([ids[2]])  # the oldest, just served
    assert semantic_store.enforce_org_cap(tenant.org.id, cap=2) == 1
    assert sorted(SemanticEntry.objects.values_list("id", flat=True)) == sorted([ids[2], ids[4]])
