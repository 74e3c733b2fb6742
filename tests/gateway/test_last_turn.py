"""Which requests the semantic cache may answer, and what of them must match exactly."""

import pytest

from formats import last_turn
from formats.headers import HeaderError, parse_options


def chat(*messages, **extra):
    return {"model": "gpt-4o-mini", "messages": list(messages), **extra}


USER = {"role": "user", "content": "What is a mutex?"}


def test_chat_messages_and_responses_split_into_the_last_user_text_and_the_rest():
    text, rest = last_turn.split("/v1/chat/completions", chat({"role": "system", "content": "Be brief."}, USER))
    assert text == "What is a mutex?"
    assert rest["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": last_turn.MARKER}]
    parts = {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "a mutex?"}]}
    assert last_turn.split("/v1/messages", chat(parts))[0] == "What is\na mutex?"
    assert last_turn.split("/v1/responses", {"model": "gpt-4o", "input": "What is a mutex?"})[0] == "What is a mutex?"
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is a mutex?"}]}
    assert last_turn.split("/v1/responses", {"model": "gpt-4o", "input": [item]})[0] == "What is a mutex?"


def test_two_requests_differing_only_in_the_last_text_have_the_same_rest():
    one = last_turn.split("/v1/chat/completions", chat(USER, temperature=0))[1]
    two = last_turn.split("/v1/chat/completions", chat({"role": "user", "content": "Explain mutexes"}, temperature=0))[1]
    assert one == two
    assert last_turn.split("/v1/chat/completions", chat(USER, temperature=1))[1] != one


@pytest.mark.parametrize("path, payload", [
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hello"}),
    ("/v1/chat/completions", chat({"role": "assistant", "content": "Hi"})),
    ("/v1/chat/completions", chat(USER, n=2)),
    ("/v1/chat/completions", chat({"role": "user", "content": ""})),
    ("/v1/chat/completions", chat({"role": "user", "content": "   "})),
    ("/v1/chat/completions", chat({"role": "user", "content": "x" * 2001})),
    ("/v1/chat/completions", chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]})),
    ("/v1/messages", chat({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "4"}]})),
    ("/v1/chat/completions", chat()),
    ("/v1/chat/completions", ["not", "an", "object"]),
])
def test_requests_the_semantic_tier_does_not_answer(path, payload):
    assert last_turn.split(path, payload) is None


def test_the_semantic_headers_parse_and_refuse_bad_values():
    opts = parse_options({"helicone-cache-enabled": "true", "helicone-cache-semantic": "shadow",
                          "helicone-cache-semantic-threshold": "0.95", "helicone-cache-semantic-scope": "User"})
    assert (opts.cache_semantic, opts.cache_semantic_threshold, opts.cache_semantic_scope) == ("shadow", 0.95, "user")
    assert parse_options({"helicone-cache-read": "true", "helicone-cache-semantic": "true"}).cache_semantic == "true"
    assert parse_options({"helicone-cache-semantic": "false"}).cache_semantic == ""
    for headers, named in [({"helicone-cache-semantic": "true"}, "Helicone-Cache-Semantic"),
                           ({"helicone-cache-save": "true", "helicone-cache-semantic": "true"}, "Helicone-Cache-Semantic"),
                           ({"helicone-cache-semantic-threshold": "high"}, "Helicone-Cache-Semantic-Threshold"),
                           ({"helicone-cache-semantic-threshold": "-0.1"}, "Helicone-Cache-Semantic-Threshold"),
                           ({"helicone-cache-semantic-scope": "team"}, "Helicone-Cache-Semantic-Scope")]:
        with pytest.raises(HeaderError) as error:
            parse_options(headers)
        assert error.value.header == named
