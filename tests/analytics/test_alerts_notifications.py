"""Alert notifications end to end: failing upstream calls fire the error-rate rule, which reaches the
org's WebSocket, a real local HTTP receiver (signed, retried), Slack and email; recovery resolves it."""

import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from analytics import alerts, webhooks
from analytics.models import AlertEvent, AlertRule, RequestLog, Webhook, WebhookDelivery
from heliconeproj.asgi import application

from .helpers import store

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver:
    """A local HTTP server that records POSTs and fails the first `failures` of them with a 500."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = len(receiver.received) <= receiver.failures
                self.send_response(500 if failing else 200)
                self.end_headers()
                self.wfile.write(b"no" if failing else b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.ALERTS_RETRY_BASE_SECONDS = 0
    settings.GATEWAY_ALLOW_PRIVATE_TARGETS = True


def make_rule(org, *webhook_list, **extra):
    values = dict(name="Errors", metric="error_rate", threshold=10, window_seconds=300, min_requests=20)
    rule = AlertRule.objects.create(org=org, **{**values, **extra})
    rule.webhooks.set(webhook_list)
    return rule


def failing_burst(gateway, tenant, n=20):
    for _ in range(n):
        response = httpx.post(gateway.url + "/oai/v1/chat/completions", timeout=30,
                              headers={"Helicone-Auth": f"Bearer {tenant.raw_key}", "X-Mock-Status": "500"},
                              json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 500
    deadline = time.monotonic() + 10
    while RequestLog.objects.filter(org=tenant.org).count() < n:
        assert time.monotonic() < deadline, "the failing requests were not logged"
        time.sleep(0.05)


def test_failing_upstream_calls_fire_the_rule_on_every_channel_and_recovery_resolves(
        gateway, tenant, receiver, mailoutbox):
    hook = Webhook.objects.create(org=tenant.org, url=receiver.url, secret="s3cret")
    # Not due during the burst: the gateway's own (embedded) evaluator must not take this tick.
    rule = make_rule(tenant.org, hook, slack_url=receiver.url + "/slack",
                     next_evaluation_at=timezone.now() + timedelta(days=1))
    rule.email_recipients.add(tenant.user)
    failing_burst(gateway, tenant)
    AlertRule.objects.filter(pk=rule.pk).update(next_evaluation_at=timezone.now())

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/orgs/acme/live/",
                                             headers=[(b"authorization", f"Bearer {tenant.raw_key}".encode())])
        assert (await communicator.connect())[0]
        evaluated, sent = await sync_to_async(alerts.tick, thread_sensitive=False)()
        assert (evaluated, sent) == (1, 2)
        message = await communicator.receive_json_from(timeout=2)
        assert message["type"] == "alert" and message["event"] == "alert.fired"
        assert message["rule"]["name"] == "Errors" and message["value"] == 100.0 and message["open_alerts"] == 1
        await communicator.disconnect()

    async_to_sync(scenario)()

    event = AlertEvent.objects.get(rule=rule)
    assert event.value == 100.0 and event.request_count == 20 and event.resolved_at is None
    signed = [(headers, body) for headers, body in receiver.received if "helicone-signature" in headers]
    slack = [json.loads(body) for headers, body in receiver.received if "helicone-signature" not in headers]
    assert len(signed) == 1 and len(slack) == 1
    headers, body = signed[0]
    assert headers["helicone-signature"] == hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert json.loads(body)["event"] == "alert.fired" and json.loads(body)["rule"]["id"] == rule.pk
    assert "FIRING: Errors" in slack[0]["text"]
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [tenant.user.email] and "Errors" in mailoutbox[0].subject

    # Recovery: successes push the rate under 10 %; the next tick resolves it.
    store([RequestLog(org=tenant.org, provider="openai", status=200) for _ in range(200)])
    AlertRule.objects.filter(pk=rule.pk).update(next_evaluation_at=timezone.now())
    alerts.tick()
    event.refresh_from_db()
    assert event.resolved_at is not None and event.resolved_value == pytest.approx(100 * 20 / 220)
    assert {json.loads(body).get("event") for _, body in receiver.received[-2:]} >= {"alert.resolved"}
    assert len(mailoutbox) == 2 and "resolved" in mailoutbox[1].subject


def test_a_receiver_that_fails_twice_gets_it_on_the_third_try():
    from orgs.models import Organization

    org = Organization.objects.create(name="Acme", slug="acme")
    receiver = Receiver(failures=2)
    try:
        hook = Webhook.objects.create(org=org, url=receiver.url, secret="k")
        delivery = webhooks.enqueue(org.id, hook.url, "alert.fired", {"hello": "world"}, webhook=hook)
        for _ in range(3):
            assert webhooks.deliver_due() == 1
        assert webhooks.deliver_due() == 0
        attempts = list(WebhookDelivery.objects.filter(message_id=delivery.message_id).order_by("attempt"))
        assert [(a.attempt, a.status, a.response_status) for a in attempts] == [
            (1, "failed", 500), (2, "failed", 500), (3, "succeeded", 200)]
        assert len(receiver.received) == 3
        assert len({body for _, body in receiver.received}) == 1
        headers, body = receiver.received[-1]
        assert headers["helicone-signature"] == hmac.new(b"k", body, hashlib.sha256).hexdigest()
    finally:
        receiver.close()


def test_retries_back_off(settings):
    from orgs.models import Organization

    settings.ALERTS_RETRY_BASE_SECONDS = 60
    org = Organization.objects.create(name="Acme", slug="acme")
    receiver = Receiver(failures=5)
    try:
        hook = Webhook.objects.create(org=org, url=receiver.url, secret="k")
        webhooks.enqueue(org.id, receiver.url, "alert.fired", {}, webhook=hook)
        assert webhooks.deliver_due() == 1
        assert webhooks.deliver_due() == 0  # the second attempt waits a minute
        retry = WebhookDelivery.objects.get(attempt=2)
        assert retry.status == "pending"
        assert timedelta(seconds=55) < retry.next_attempt_at - timezone.now() <= timedelta(seconds=60)
    finally:
        receiver.close()


def test_a_private_address_is_refused_at_send_time_unless_allowed(settings):
    from orgs.models import Organization

    settings.GATEWAY_ALLOW_PRIVATE_TARGETS = False
    settings.GATEWAY_ALLOWED_TARGET_HOSTS = []
    org = Organization.objects.create(name="Acme", slug="acme")
    receiver = Receiver()
    try:
        hook = Webhook.objects.create(org=org, url=receiver.url, secret="k")
        webhooks.enqueue(org.id, receiver.url, "alert.fired", {}, webhook=hook)
        webhooks.deliver_due()
        first = WebhookDelivery.objects.get(attempt=1)
        assert first.status == "failed" and "private" in first.error and receiver.received == []
        settings.GATEWAY_ALLOWED_TARGET_HOSTS = ["127.0.0.1"]
        webhooks.deliver_due()
        assert len(receiver.received) == 1
    finally:
        receiver.close()


def test_the_embedded_writer_evaluates_rules_in_the_background(settings):
    from analytics.writer import write_batch
    from orgs.models import Organization

    settings.ALERTS_EMBEDDED = True
    settings.ALERTS_EMBEDDED_SECONDS = 0
    settings.REDIS_URL = ""
    org = Organization.objects.create(name="Acme", slug="acme")
    rule = make_rule(org, min_requests=1)
    alerts.register_listeners()
    try:
        write_batch([{"id": str(uuid.uuid4()), "org_id": org.id, "created_at": time.time(),
                      "provider": "openai", "model": "gpt-4o", "status": 500}])
        deadline = time.monotonic() + 5
        while not AlertEvent.objects.filter(rule=rule).exists():
            assert time.monotonic() < deadline, "the embedded evaluator did not fire the rule"
            time.sleep(0.05)
        while alerts._embedded_lock.locked():
            time.sleep(0.01)
    finally:
        from analytics import live

        live.listeners.remove(alerts.embedded_listener)


def test_request_webhooks_receive_matching_logged_requests_signed():
    from analytics.writer import write_batch
    from orgs.models import Organization

    org = Organization.objects.create(name="Acme", slug="acme")
    receiver = Receiver()
    try:
        hook = Webhook.objects.create(org=org, kind="requests", url=receiver.url, secret="rk",
                                      property_filters={"Env": "prod"}, include_bodies=True)
        Webhook.objects.create(org=org, kind="requests", url=receiver.url + "/never", secret="x", sample_rate=0)
        ids = [str(uuid.uuid4()) for _ in range(3)]
        base = {"org_id": org.id, "created_at": time.time(), "provider": "openai", "model": "gpt-4o", "status": 200,
                "request_body": '{"q": 1}'}
        write_batch([{**base, "id": ids[0], "properties": {"Env": "prod"}},
                     {**base, "id": ids[1], "properties": {"Env": "dev"}},
                     {**base, "id": ids[2]}])
        assert webhooks.deliver_due() == 1
        headers, body = receiver.received[0]
        assert headers["helicone-signature"] == hmac.new(b"rk", body, hashlib.sha256).hexdigest()
        data = json.loads(body)
        assert data["type"] == "request.logged" and data["request"]["id"] == ids[0]
        assert data["request"]["request_body"] == '{"q": 1}'
        assert WebhookDelivery.objects.get().webhook == hook
    finally:
        receiver.close()


def test_a_deleted_webhook_gets_nothing_more():
    from orgs.models import Organization

    org = Organization.objects.create(name="Acme", slug="acme")
    receiver = Receiver()
    try:
        hook = Webhook.objects.create(org=org, url=receiver.url, secret="k")
        webhooks.enqueue(org.id, receiver.url, "alert.fired", {}, webhook=hook)
        hook.delete()
        assert webhooks.deliver_due() == 1
        assert receiver.received == []
        assert list(WebhookDelivery.objects.values_list("status", "error")) == [("failed", "The webhook was deleted")]
    finally:
        receiver.close()
