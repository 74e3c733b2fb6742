"""An app instrumented with OpenTelemetry, run by tests/analytics/test_otlp_ingest.py in its own process.

It uses the real SDK, the OTLP/HTTP protobuf exporter and OpenLLMetry's
`opentelemetry-instrumentation-openai` around an OpenAI client that calls the mock provider
directly (not through the gateway). In a process of its own because the instrumentation patches
the openai package for the whole process (and cannot take its patches back off).

    python otlp_app.py SCENARIO '{"endpoint": ..., "key": ..., "mock": ..., "gateway": ...}'

Prints one JSON line per step; `late` waits for a line on stdin before its parent span ends.
"""

from __future__ import annotations

import base64
import json
import sys

import openai
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

QUESTION = [{"role": "user", "content": "plan a short trip"}]


def say(**values) -> None:
    print(json.dumps(values), flush=True)


def main(scenario: str, options: dict) -> None:
    header = options.get("header", "Authorization")
    exporter = OTLPSpanExporter(
        endpoint=options.get("endpoint", ""), headers={header: f"Bearer {options.get('key', '')}"}, timeout=20,
        compression=Compression.NoCompression if options.get("plain") else Compression.Gzip)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    if scenario == "record":
        provider.add_span_processor(SimpleSpanProcessor(memory))
    elif scenario == "agent":
        # The SDK's usual set-up: spans batched, exported every few seconds and at the end.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        # One export per span as it ends (children before their parents).
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    tracer = provider.get_tracer("otlp-test-app")
    llm = openai.OpenAI(base_url=options.get("mock", "") + "/v1", api_key="sk-provider-secret", max_retries=0)

    if scenario == "agent":
        with tracer.start_as_current_span("trip agent") as agent:
            # Set on the enclosing span only: the instrumentation does not copy them onto LLM spans.
            agent.set_attribute("session.id", "trip-42")
            agent.set_attribute("user.id", "ana")
            agent.set_attribute("traceloop.association.properties.Helicone-Property-Feature", "planner")
            with tracer.start_as_current_span("plan"):
                answer = llm.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
            with tracer.start_as_current_span("write up"):
                chunks = list(llm.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True,
                                                          stream_options={"include_usage": True}))
        say(answer=answer.choices[0].message.content,
            streamed="".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    elif scenario == "late":
        with tracer.start_as_current_span("support ticket") as ticket:
            llm.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, user="end-user-7")
            say(trace_id=format(ticket.get_span_context().trace_id, "032x"))
            sys.stdin.readline()
            ticket.set_attribute("session.id", "ticket-9")
            ticket.set_attribute("user.id", "customer-1")
    elif scenario == "alone":
        llm.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    elif scenario == "error":
        try:
            llm.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, extra_headers={"X-Mock-Status": "429"})
        except openai.RateLimitError as exc:
            say(error=type(exc).__name__)
    elif scenario == "proxied":
        gateway = openai.OpenAI(base_url=options["gateway"] + "/oai/v1", api_key="sk-provider-secret", max_retries=0,
                                default_headers={"Helicone-Auth": f"Bearer {options['key']}"})
        with tracer.start_as_current_span("agent"):
            raw = gateway.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=QUESTION)
            say(helicone_id=raw.headers["helicone-id"])
    elif scenario == "record":
        with tracer.start_as_current_span("compare") as root:
            root.set_attribute("session.id", "same-spans")
            llm.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, user="ana")
            list(llm.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True,
                                             stream_options={"include_usage": True}))
        message = encode_spans(memory.get_finished_spans())
        say(protobuf=base64.b64encode(message.SerializeToString()).decode())
    provider.shutdown()  # exports what is left, as an app does at exit
    say(done=True)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
