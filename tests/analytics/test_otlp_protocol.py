"""POST /v1/traces (and Helicone's /v1/trace/log, /v1/trace/log-python): the OTLP/HTTP protocol,
every generation of GenAI attributes, trace context, bad input and who may write."""

from __future__ import annotations

import gzip
import threading
import time
import uuid
from datetime import timedelta

import orjson
import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from analytics import ingest
from analytics.models import RequestLog, TraceSpan
from analytics.pricing import cost_usd
from analytics.writer import write_batch
from orgs.models import ApiKey, Organization
from tests.base import BaseTestCase

from .helpers import create_log
from .otlp_helpers import as_json, chat_attributes, export, new_span_id, new_trace, span

PROTOBUF = "application/x-protobuf"


class OtlpTestCase(BaseTestCase):
    def setUp(self):
        self.key, self.raw = self.make_key(scopes=["proxy"])

    def post(self, body: bytes, content_type: str = PROTOBUF, path: str = "/v1/traces", raw: str | None = None,
             **headers):
        if raw is not False:
            headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {raw or self.raw}")
        return self.client.post(path, body, content_type=content_type, **headers)

    def send(self, *spans, **kwargs):
        response = self.post(export(*spans).SerializeToString(), **kwargs)
        assert response.status_code == 200, response.content
        return ExportTraceServiceResponse.FromString(response.content)

    def only_log(self) -> RequestLog:
        (log,) = RequestLog.objects.filter(org=self.org)
        return log


class GenAiFormsTests(OtlpTestCase):
    def test_current_conventions_priced_like_a_proxied_call(self):
        attrs = chat_attributes(**{"gen_ai.usage.cache_read.input_tokens": 200, "gen_ai.request.temperature": 0.2})
        answer = self.send(span(trace=new_trace(), attrs=attrs))
        assert not answer.HasField("partial_success")
        log = self.only_log()
        assert (log.source, log.provider, log.requested_model, log.model) == (
            "otlp", "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
        assert (log.prompt_tokens, log.completion_tokens, log.cached_tokens) == (1000, 500, 200)
        assert log.cost_usd == cost_usd("openai", "gpt-4o-mini-2024-07-18", 1000, 500, 200)
        assert log.cost_usd is not None and log.cost_usd > 0
        assert abs(log.latency_ms - 800) < 0.01 and log.status == 200 and not log.error
        request, response = orjson.loads(log.request_body), orjson.loads(log.response_body)
        assert request["messages"] == [{"role": "user", "content": "hi"}] and request["temperature"] == 0.2
        assert response["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                                        "finish_reason": "stop"}]
        assert response["id"] == attrs["gen_ai.response.id"]
        # The request page shows the conversation as it does for a proxied call.
        self.client.force_login(self.alice)
        page = self.client.get(f"/o/alice-org/requests/{log.id}/").content.decode()
        assert "hello" in page and "gpt-4o-mini-2024-07-18" in page

    def test_indexed_attributes_of_older_instrumentations_with_tool_calls(self):
        attrs = {
            "gen_ai.system": "Anthropic", "llm.request.type": "chat", "gen_ai.request.model": "claude-3-5-haiku-latest",
            "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Be brief",
            "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "Weather in Paris?",
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.finish_reason": "tool_use",
            "gen_ai.completion.0.tool_calls.0.id": "toolu_1", "gen_ai.completion.0.tool_calls.0.name": "weather",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Paris"}',
            "gen_ai.usage.prompt_tokens": 120, "gen_ai.usage.completion_tokens": 30, "llm.is_streaming": True,
        }
        self.send(span("anthropic.chat", trace=new_trace(), attrs=attrs))
        log = self.only_log()
        assert (log.provider, log.model, log.prompt_tokens, log.completion_tokens, log.streamed) == (
            "anthropic", "claude-3-5-haiku-latest", 120, 30, True)
        assert log.cost_usd is not None and log.cost_usd > 0
        request, response = orjson.loads(log.request_body), orjson.loads(log.response_body)
        assert request["messages"] == [{"role": "system", "content": "Be brief"},
                                       {"role": "user", "content": "Weather in Paris?"}]
        choice = response["choices"][0]
        assert choice["finish_reason"] == "tool_use"
        assert choice["message"]["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": {
            "name": "weather", "arguments": '{"city": "Paris"}'}}]

    def test_span_event_forms(self):
        trace = new_trace()
        base = {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 2}
        prompt = orjson.dumps([{"role": "user", "content": "ping"}]).decode()
        completion = orjson.dumps([{"role": "assistant", "content": "pong", "finish_reason": "stop"}]).decode()
        content_events = span(trace=trace, attrs=base, events=[
            ("gen_ai.content.prompt", 1, {"gen_ai.prompt": prompt}),
            ("gen_ai.content.completion", 700, {"gen_ai.completion": completion})])
        message_events = span(trace=trace, attrs=base, events=[
            ("gen_ai.system.message", 1, {"content": "Be kind"}), ("gen_ai.user.message", 1, {"content": "ping"}),
            ("gen_ai.choice", 700, {"index": 0, "finish_reason": "stop",
                                    "message": orjson.dumps({"role": "assistant", "content": "pong"}).decode()})])
        self.send(content_events, message_events)
        for log in RequestLog.objects.filter(org=self.org):
            response = orjson.loads(log.response_body)
            assert response["choices"][0]["message"]["content"] == "pong"
            assert response["choices"][0]["finish_reason"] == "stop"
            assert {"role": "user", "content": "ping"} in orjson.loads(log.request_body)["messages"]
        assert RequestLog.objects.filter(org=self.org).count() == 2

    def test_openinference_llm_span(self):
        attrs = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
                 "llm.token_count.prompt": 40, "llm.token_count.completion": 8,
                 "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "Hi there",
                 "llm.output_messages.0.message.role": "assistant",
                 "llm.output_messages.0.message.content": "Hello!", "session.id": "oi-session"}
        self.send(span("ChatCompletion", trace=new_trace(), attrs=attrs))
        log = self.only_log()
        assert (log.model, log.prompt_tokens, log.completion_tokens, log.session_id) == (
            "gpt-4o-mini", 40, 8, "oi-session")
        assert orjson.loads(log.response_body)["choices"][0]["message"]["content"] == "Hello!"

    def test_streamed_call_time_to_first_token_from_its_chunk_events(self):
        attrs = chat_attributes(**{"gen_ai.is_streaming": True})
        self.send(span(trace=new_trace(), attrs=attrs, duration_ms=900,
                       events=[("gen_ai.content.completion.chunk", 120, {}),
                               ("gen_ai.content.completion.chunk", 300, {})]))
        log = self.only_log()
        assert log.streamed and abs(log.ttft_ms - 120) < 0.01

    def test_failed_span_is_an_error_log(self):
        attrs = {**chat_attributes(), "error.type": "InternalServerError"}
        for name in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.output.messages"):
            attrs.pop(name)
        self.send(span(trace=new_trace(), attrs=attrs, error="Error code: 503 - {'error': 'overloaded'}"))
        log = self.only_log()
        assert log.status == 503 and "overloaded" in log.error
        assert orjson.loads(log.response_body)["error"]["message"] == log.error
        assert log.cost_usd is None

    def test_non_llm_spans_are_no_logs_and_kept_only_around_llm_calls(self):
        trace, root = new_trace(), new_span_id()
        client = Span.SPAN_KIND_CLIENT
        self.send(span("handle request", trace=trace, span_id=root, kind=Span.SPAN_KIND_SERVER),
                  span("GET /health", trace=trace, parent=root, kind=client, attrs={"http.method": "GET"}),
                  span("execute_tool weather", trace=trace, parent=root, kind=client,
                       attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.request.model": "gpt-4o"}))
        assert not RequestLog.objects.exists()
        # Only the server span is kept, in case LLM calls of its trace come later; calls out never are.
        assert list(TraceSpan.objects.values_list("name", flat=True)) == ["handle request"]
        # An hour later without an LLM call, it is forgotten (at the next export, at most every 10 minutes).
        TraceSpan.objects.update(created_at=timezone.now() - timedelta(hours=2))
        ingest._last_expiry = 0.0
        self.send(span("another", trace=new_trace(), kind=client))
        assert not TraceSpan.objects.exists()

    def test_spans_of_traces_with_llm_calls_are_kept_for_days(self):
        trace, root = new_trace(), new_span_id()
        self.send(span("agent", trace=trace, span_id=root), span(trace=trace, parent=root, attrs=chat_attributes(),
                                                                 kind=Span.SPAN_KIND_CLIENT))
        TraceSpan.objects.update(created_at=timezone.now() - timedelta(days=2))
        ingest._last_expiry = 0.0
        self.send(span("another", trace=new_trace()))
        assert TraceSpan.objects.filter(trace_id=trace.hex()).count() == 2
        TraceSpan.objects.filter(trace_id=trace.hex()).update(created_at=timezone.now() - timedelta(days=8))
        ingest._last_expiry = 0.0
        self.send(span("yet another", trace=new_trace(), kind=Span.SPAN_KIND_CLIENT))
        assert not TraceSpan.objects.filter(trace_id=trace.hex()).exists()
        assert RequestLog.objects.filter(org=self.org).count() == 1


class TraceContextTests(OtlpTestCase):
    def test_association_properties_give_user_session_and_properties(self):
        trace = new_trace()
        root_id = new_span_id()
        association = "traceloop.association.properties."
        root = span("support flow", trace=trace, span_id=root_id, duration_ms=5000, attrs={
            association + "Helicone-User-Id": "ana", association + "Helicone-Session-Id": "case-7",
            association + "Helicone-Session-Name": "Refund", association + "Helicone-Property-Tier": "gold",
            association + "customer": "acme"})
        call = span(trace=trace, parent=root_id, attrs=chat_attributes(**{
            association + "Helicone-Property-Step": "draft", "gen_ai.user": "openai-user-param"}))
        self.send(call, root)
        log = self.only_log()
        assert (log.user_id, log.session_id, log.session_name, log.session_path) == (
            "ana", "case-7", "Refund", "/support flow")
        assert log.properties == {"Tier": "gold", "customer": "acme", "Step": "draft"}

    def test_context_arriving_after_the_call_moves_it_in_the_rollups_too(self):
        from analytics import metrics, rollups
        from analytics.queries import Selection

        from .test_rollups import snapshot

        trace = new_trace()
        root_id = new_span_id()
        association = "traceloop.association.properties."
        self.send(span(trace=trace, parent=root_id, attrs=chat_attributes()))
        self.send(span("support flow", trace=trace, span_id=root_id, duration_ms=5000, attrs={
            association + "Helicone-User-Id": "ana", association + "Helicone-Property-Tier": "gold"}))
        assert self.only_log().user_id == "ana"
        selection = Selection(self.org, timezone.now() - timedelta(hours=1), timezone.now() + timedelta(minutes=1))
        users = metrics.grouped(selection, "user", exclude_empty=True, with_percentiles=False)
        assert [(row["key"], row["count"]) for row in users] == [("ana", 1)]
        tiers = metrics.grouped(selection, "property:Tier", exclude_empty=True, with_percentiles=False)
        assert [(row["key"], row["count"]) for row in tiers] == [("gold", 1)]
        kept = snapshot(self.org)
        rollups.rebuild(self.org.id)
        assert snapshot(self.org) == kept

    def test_a_trace_is_a_session_whose_path_is_the_parent_spans(self):
        trace = new_trace()
        agent, step = new_span_id(), new_span_id()
        self.send(span("answer/route", trace=trace, span_id=step, parent=agent,
                       attrs={"traceloop.span.kind": "task"}),
                  span(trace=trace, parent=step, attrs=chat_attributes()))
        log = self.only_log()
        # The root has not arrived yet: the path starts at the highest span known.
        assert (log.session_id, log.session_path, log.session_name) == (trace.hex(), "/answer\u2215route", "")
        self.send(span("research agent", trace=trace, span_id=agent))
        log.refresh_from_db()
        assert (log.session_path, log.session_name) == ("/research agent/answer\u2215route", "research agent")
        assert log.session_id == trace.hex()

    def test_a_frameworks_llm_span_around_the_providers_is_one_call(self):
        trace, agent, wrapper = new_trace(), new_span_id(), new_span_id()
        langchain = {"llm.request.type": "chat", "gen_ai.system": "Langchain", "gen_ai.request.model": "gpt-4o-mini",
                     "gen_ai.usage.prompt_tokens": 1000, "gen_ai.usage.completion_tokens": 500}
        # The provider's span first (it ends first), the framework's in a later export.
        self.send(span(trace=trace, parent=wrapper, attrs=chat_attributes(), kind=Span.SPAN_KIND_CLIENT))
        self.send(span("ChatOpenAI.chat", trace=trace, span_id=wrapper, parent=agent, attrs=langchain),
                  span("agent", trace=trace, span_id=agent))
        log = self.only_log()
        assert (log.provider, log.session_path) == ("openai", "/agent/ChatOpenAI.chat")
        # Both in one export: the same.
        trace, wrapper = new_trace(), new_span_id()
        self.send(span("ChatOpenAI.chat", trace=trace, span_id=wrapper, attrs=langchain),
                  span(trace=trace, parent=wrapper, attrs=chat_attributes(), kind=Span.SPAN_KIND_CLIENT))
        assert RequestLog.objects.filter(org=self.org, provider="openai").count() == 2
        assert RequestLog.objects.filter(org=self.org).count() == 2

    def test_a_later_helicone_omit_response_on_a_parent_removes_the_stored_body(self):
        trace, root = new_trace(), new_span_id()
        self.send(span(trace=trace, parent=root, attrs=chat_attributes()))
        assert "hello" in self.only_log().response_body
        self.send(span("private", trace=trace, span_id=root,
                       attrs={"traceloop.association.properties.Helicone-Omit-Response": "true"}))
        log = self.only_log()
        assert log.response_omitted and log.response_body == ""

    def test_nul_characters_in_names_and_attributes_are_dropped(self):
        trace, root = new_trace(), new_span_id()
        self.send(span("flow\x00", trace=trace, span_id=root, attrs={"user.id": "a\x00na"}),
                  span(trace=trace, parent=root, attrs=chat_attributes(**{"gen_ai.request.model": "gpt\x00-4o"})))
        log = self.only_log()
        assert (log.user_id, log.session_path, log.requested_model) == ("ana", "/flow", "gpt-4o")

    def test_erasing_a_user_forgets_the_spans_that_named_them(self):
        trace, root = new_trace(), new_span_id()
        self.send(span("flow", trace=trace, span_id=root, attrs={"user.id": "erase-me"}),
                  span(trace=trace, parent=root, attrs=chat_attributes()))
        assert self.only_log().user_id == "erase-me"
        _, writer = self.make_key(scopes=["write"])
        response = self.client.delete("/api/v1/users/erase-me", HTTP_AUTHORIZATION=f"Bearer {writer}")
        assert response.status_code == 200 and response.json()["requests"] == 1
        assert not TraceSpan.objects.filter(org=self.org, context__user_id="erase-me").exists()


class ProtocolTests(OtlpTestCase):
    def test_json_gzip_and_the_helicone_paths(self):
        body = as_json(export(span(trace=new_trace(), attrs=chat_attributes())))
        response = self.post(gzip.compress(body), "application/json", path="/v1/trace/log",
                             HTTP_CONTENT_ENCODING="gzip")
        assert response.status_code == 200 and response["Content-Type"] == "application/json"
        assert response.json() == {}
        protobuf = export(span(trace=new_trace(), attrs=chat_attributes())).SerializeToString()
        response = self.post(protobuf, path="/v1/trace/log-python", raw=False,
                             HTTP_HELICONE_AUTH=f"Bearer {self.raw}")
        assert response.status_code == 200 and response["Content-Type"] == PROTOBUF
        assert RequestLog.objects.filter(org=self.org, api_key=self.key).count() == 2

    def test_partial_success_names_the_rejected_spans_and_keeps_the_rest(self):
        good = span(trace=new_trace(), attrs=chat_attributes())
        short_id = span(trace=b"\x01" * 8, attrs=chat_attributes())
        bad_property = span(trace=new_trace(), attrs=chat_attributes(**{
            "traceloop.association.properties.Helicone-Property-bad name": "x"}))
        answer = self.send(good, short_id, bad_property)
        assert answer.partial_success.rejected_spans == 2
        message = answer.partial_success.error_message
        assert "spans[1]: traceId must be 16 bytes" in message
        assert "spans[2]: traceloop.association.properties.Helicone-Property-bad name" in message
        assert self.only_log().id is not None
        as_text = self.post(as_json(export(good, short_id)), "application/json").json()
        assert as_text["partialSuccess"]["rejectedSpans"] in ("1", 1)

    def test_malformed_exports_are_400_with_the_otlp_status_and_write_nothing(self):
        response = self.post(b"\xff\xff not protobuf")
        assert response.status_code == 400 and response["Content-Type"] == PROTOBUF
        status = RpcStatus.FromString(response.content)
        assert status.code == 3 and "protobuf" in status.message

        response = self.post(b"{not json", "application/json")
        assert response.status_code == 400 and response.json()["code"] == 3
        assert "not valid JSON" in response.json()["message"]

        bad_hex = orjson.loads(as_json(export(span(trace=new_trace(), attrs=chat_attributes()))))
        bad_hex["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "xyz"
        response = self.post(orjson.dumps(bad_hex), "application/json")
        assert response.status_code == 400
        assert "resourceSpans[0].scopeSpans[0].spans[0].traceId is not hex" in response.json()["message"]

        # A good span before a broken one: the export is refused whole.
        half = orjson.loads(as_json(export(span(trace=new_trace(), attrs=chat_attributes()),
                                           span(trace=new_trace(), attrs=chat_attributes()))))
        half["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["startTimeUnixNano"] = "soon"
        response = self.post(orjson.dumps(half), "application/json")
        assert response.status_code == 400 and "startTimeUnixNano" in response.json()["message"]

        response = self.post(b"not gzip", HTTP_CONTENT_ENCODING="gzip")
        assert response.status_code == 400 and "gzip" in RpcStatus.FromString(response.content).message
        assert not RequestLog.objects.exists() and not TraceSpan.objects.exists()

    @override_settings(GATEWAY_MAX_BODY_BYTES=4000)
    def test_huge_exports_are_413(self):
        response = self.post(b"\x00" * 5000)
        assert response.status_code == 413 and RpcStatus.FromString(response.content).code == 8
        bomb = gzip.compress(b"{" + b" " * 1_000_000 + b"}")
        response = self.post(bomb, "application/json", HTTP_CONTENT_ENCODING="gzip")
        assert response.status_code == 413 and "4000 bytes" in response.json()["message"]

    def test_too_many_spans_are_413(self):
        trace = new_trace()
        many = export(*[span("step", trace=trace) for _ in range(10_001)])
        with override_settings(GATEWAY_MAX_BODY_BYTES=64 * 1024 * 1024):
            response = self.post(many.SerializeToString())
        assert response.status_code == 413
        assert "at most 10000 spans" in RpcStatus.FromString(response.content).message

    def test_unsupported_media_and_methods(self):
        response = self.post(b"hello", "text/plain")
        assert response.status_code == 415 and "Content-Type" in response.json()["message"]
        response = self.post(b"x", HTTP_CONTENT_ENCODING="br")
        assert response.status_code == 415
        response = self.client.get("/v1/traces", HTTP_AUTHORIZATION=f"Bearer {self.raw}")
        assert response.status_code == 405 and response["Allow"] == "POST"

    def test_keys_and_scopes(self):
        body = export(span(trace=new_trace(), attrs=chat_attributes())).SerializeToString()
        response = self.post(body, raw=False)
        assert response.status_code == 401 and "Authorization: Bearer" in RpcStatus.FromString(response.content).message
        assert self.post(body, raw="sk-helicone-not-a-key").status_code == 401
        assert self.post(body, raw=False, HTTP_AUTHORIZATION="Basic abc").status_code == 401
        _, reader = self.make_key(scopes=["read"])
        response = self.post(body, raw=reader)
        assert response.status_code == 403
        assert "'proxy' or 'write' scope" in RpcStatus.FromString(response.content).message
        revoked, revoked_raw = self.make_key(scopes=["proxy"])
        revoked.revoked_at = timezone.now()
        revoked.save(update_fields=["revoked_at"])
        assert self.post(body, raw=revoked_raw).status_code == 401
        _, writer = self.make_key(scopes=["write"])
        assert self.post(body, raw=writer).status_code == 200
        Organization.objects.filter(pk=self.org.pk).update(suspended_at=timezone.now(), suspended_reason="unpaid")
        response = self.post(export(span(trace=new_trace(), attrs=chat_attributes())).SerializeToString())
        assert response.status_code == 403 and "suspended" in RpcStatus.FromString(response.content).message
        assert RequestLog.objects.count() == 1

    def test_a_key_writes_only_into_its_own_org_and_never_matches_another_orgs_log(self):
        # charlie-org has a proxied log carrying the response id alice-org's span reports.
        attrs = chat_attributes()
        other = create_log(org=self.other_org, provider="openai", status=200,
                                          model="gpt-4o-mini-2024-07-18",
                                          response_body=orjson.dumps({"id": attrs["gen_ai.response.id"]}).decode())
        self.send(span(trace=new_trace(), attrs=attrs))
        log = self.only_log()
        assert log.source == "otlp" and log.org_id == self.org.id
        other.refresh_from_db()
        assert other.session_id == "" and RequestLog.objects.filter(org=self.other_org).count() == 1

    def test_proxied_logs_are_matched_by_response_id_unless_the_span_went_elsewhere(self):
        def proxied(attrs):
            return create_log(org=self.org, provider="openai", status=200,
                                             model="gpt-4o-mini-2024-07-18",
                                             created_at=timezone.now() - timedelta(seconds=5),
                                             response_body=orjson.dumps({"id": attrs["gen_ai.response.id"]}).decode())

        # No URL on the span: matched, and the proxied log joins the trace's session.
        unknown_url = chat_attributes()
        first = proxied(unknown_url)
        trace = new_trace()
        self.send(span(trace=trace, parent=new_span_id(), attrs=unknown_url))
        assert list(RequestLog.objects.filter(org=self.org)) == [first]
        first.refresh_from_db()
        assert first.session_id == trace.hex()
        # Sent straight to the provider: not the proxied call, whatever the id.
        direct = chat_attributes(**{"gen_ai.openai.api_base": "https://api.openai.com/v1/"})
        proxied(direct)
        self.send(span(trace=new_trace(), attrs=direct))
        assert RequestLog.objects.filter(org=self.org, source="otlp").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_span_sent_through_our_proxy_route_waits_for_its_proxied_log(client):
    """The span arrives before the proxied log of the same call is written: it waits, and the proxied
    log wins. (The gateway writes its logs in the background, a few milliseconds after answering.)"""
    org = Organization.objects.create(name="Wait", slug="wait")
    _, raw = ApiKey.generate(org, "k", ["proxy"])
    attrs = chat_attributes(**{"gen_ai.openai.api_base": "http://127.0.0.1:8000/oai/v1/"})
    response_id = attrs["gen_ai.response.id"]
    proxied_id = str(uuid.uuid4())

    def proxy_writes_its_log_late():
        time.sleep(1.0)
        write_batch([{"id": proxied_id, "org_id": org.id, "created_at": time.time() - 4.5, "provider": "openai",
                      "model": "gpt-4o-mini-2024-07-18", "status": 200,
                      "response_body": orjson.dumps({"id": response_id}).decode(),
                      "prompt_tokens": 1000, "completion_tokens": 500}])
        connection.close()

    writer = threading.Thread(target=proxy_writes_its_log_late)
    writer.start()
    body = export(span(trace=new_trace(), parent=new_span_id(), attrs=attrs,
                       start_ns=time.time_ns() - 5_000_000_000)).SerializeToString()
    response = client.post("/v1/traces", body, content_type=PROTOBUF, HTTP_AUTHORIZATION=f"Bearer {raw}")
    writer.join()
    assert response.status_code == 200
    (log,) = RequestLog.objects.filter(org=org)
    assert str(log.id) == proxied_id and log.source == "proxy"
    # Placed in the trace's session, since it named none.
    assert len(log.session_id) == 32
