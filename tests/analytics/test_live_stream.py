"""/ws/orgs/<slug>/live/: members and read keys receive each logged request; everyone else is refused."""

import asyncio
import time
import uuid

import aiohttp
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from analytics.writer import write_batch
from heliconeproj.asgi import application
from orgs.models import ApiKey, Membership, Organization, Role, User
from tests.base import redis_url
from tests.servers import Daphne, proxy_calls, unique_stream_key

pytestmark = pytest.mark.django_db(transaction=True)


def record(org_id, **extra):
    return {"id": str(uuid.uuid4()), "org_id": org_id, "created_at": time.time(), "provider": "openai",
            "model": "gpt-4o-mini", "status": 200, "prompt_tokens": 10, "completion_tokens": 2,
            "latency_ms": 12.5, "user_id": "u-1", "properties": {"Feature": "chat"}, **extra}


def session_headers(user, origin="http://127.0.0.1:8000"):
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [(b"cookie", cookie.encode()), (b"origin", origin.encode())]


def bearer(raw):
    return [(b"authorization", f"Bearer {raw}".encode())]


async def connect(slug, headers):
    communicator = WebsocketCommunicator(application, f"/ws/orgs/{slug}/live/", headers=headers)
    connected, _ = await communicator.connect()
    return communicator, connected


def test_a_read_key_receives_one_message_per_logged_request(tenant):
    async def scenario():
        communicator, connected = await connect("acme", bearer(tenant.raw_key))
        assert connected
        records = [record(tenant.org.id), record(tenant.org.id, status=500, error="boom"),
                   record(tenant.other_org.id)]
        await sync_to_async(write_batch, thread_sensitive=False)(records)
        first = await communicator.receive_json_from(timeout=2)
        second = await communicator.receive_json_from(timeout=2)
        assert [first["id"], second["id"]] == [records[0]["id"], records[1]["id"]]
        assert first["type"] == "request" and first["model"] == "gpt-4o-mini" and first["status"] == 200
        assert first["user_id"] == "u-1" and first["properties"] == {"Feature": "chat"}
        assert first["total_tokens"] == 12 and first["latency_ms"] == 12.5
        assert second["status"] == 500 and second["error"] == "boom"
        assert await communicator.receive_nothing(timeout=0.3)  # the other org's request never arrives
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_large_batch_sends_an_org_its_newest_requests(tenant):
    """A writer's batch under load holds thousands of an org's logs; its sockets hear of the newest
    EVENTS_PER_BATCH of them, oldest first, and another org's few all the same."""
    from analytics.live import EVENTS_PER_BATCH

    async def scenario():
        ours, connected = await connect("acme", bearer(tenant.raw_key))
        assert connected
        theirs, connected = await connect("other", bearer(tenant.other_raw_key))
        assert connected
        many = [record(tenant.org.id) for _ in range(EVENTS_PER_BATCH + 150)]
        few = [record(tenant.other_org.id) for _ in range(3)]
        await sync_to_async(write_batch, thread_sensitive=False)(many[:100] + few + many[100:])
        heard = [(await ours.receive_json_from(timeout=2))["id"] for _ in range(EVENTS_PER_BATCH)]
        assert heard == [item["id"] for item in many[-EVENTS_PER_BATCH:]]
        assert await ours.receive_nothing(timeout=0.3)
        assert [(await theirs.receive_json_from(timeout=2))["id"] for _ in few] == [item["id"] for item in few]
        await ours.disconnect()
        await theirs.disconnect()

    async_to_sync(scenario)()


def test_a_members_browser_session_is_accepted():
    user = User.objects.create_user("m@example.org", "pw-123456789")
    org = Organization.objects.create(name="Acme", slug="acme")
    Membership.objects.create(org=org, user=user, role=Role.VIEWER)

    async def scenario():
        communicator, connected = await connect("acme", await sync_to_async(session_headers)(user))
        assert connected
        rec = record(org.id)
        await sync_to_async(write_batch, thread_sensitive=False)([rec])
        assert (await communicator.receive_json_from(timeout=2))["id"] == rec["id"]
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_everyone_else_is_refused_at_connect(tenant):
    outsider = User.objects.create_user("out@example.org", "pw-123456789")
    Membership.objects.create(org=tenant.other_org, user=outsider, role=Role.OWNER)
    _, proxy_only = ApiKey.generate(tenant.org, "proxy only", ["proxy"])
    revoked, revoked_raw = ApiKey.generate(tenant.org, "revoked", ["read"])
    revoked.revoked_at = revoked.created_at
    revoked.save(update_fields=["revoked_at"])
    member_cookie = session_headers(tenant.user)
    refused = [
        ("acme", []),  # nobody
        ("acme", session_headers(outsider)),  # a member of another org
        ("acme", bearer(tenant.other_raw_key)),  # another org's key
        ("acme", bearer(proxy_only)),  # no read scope
        ("acme", bearer(revoked_raw)),  # revoked
        ("acme", bearer("sk-helicone-made-up")),
        ("missing", bearer(tenant.raw_key)),  # an org that does not exist
        ("acme", session_headers(tenant.user, origin="https://evil.example")),  # another site riding the cookie
        ("acme", [member_cookie[0]]),  # a cookie without Origin is not a browser: keys only
    ]

    async def scenario():
        for slug, headers in refused:
            communicator, connected = await connect(slug, headers)
            assert not connected, (slug, headers)
            await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_2fa_org_refuses_an_unverified_session(tenant):
    tenant.org.require_2fa = True
    tenant.org.save(update_fields=["require_2fa"])

    async def scenario():
        communicator, connected = await connect("acme", await sync_to_async(session_headers)(tenant.user))
        assert not connected
        communicator, connected = await connect("acme", bearer(tenant.raw_key))
        assert connected  # keys are not subject to 2FA
        await communicator.disconnect()

    async_to_sync(scenario)()


async def _tail(url: str, raw_key: str, request_ids: asyncio.Future, ready: asyncio.Event, timeout: float = 10):
    """Connect like a program tailing its traffic; return {id: seconds after the response}."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, headers={"Authorization": f"Bearer {raw_key}"}) as ws:
            ready.set()
            wanted, answered_at = await request_ids
            seen = {}
            deadline = time.monotonic() + timeout
            while set(seen) != set(wanted) and time.monotonic() < deadline:
                try:
                    message = await ws.receive_json(timeout=deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
                if message.get("id") in wanted:
                    seen[message["id"]] = time.monotonic() - answered_at
            return seen


def _live_roundtrip(ws_base: str, http_base: str, raw_key: str, n: int = 3) -> dict:
    async def scenario():
        loop = asyncio.get_running_loop()
        request_ids: asyncio.Future = loop.create_future()
        ready = asyncio.Event()
        tail = asyncio.create_task(_tail(f"{ws_base}/ws/orgs/acme/live/", raw_key, request_ids, ready))
        await asyncio.wait_for(ready.wait(), 10)
        ids = await asyncio.to_thread(proxy_calls, http_base, raw_key, n)
        request_ids.set_result((ids, time.monotonic()))
        seen = await tail
        return ids, seen

    ids, seen = asyncio.run(scenario())
    assert set(seen) == set(ids), f"live events missing for {set(ids) - set(seen)}"
    return seen


def test_a_proxied_call_arrives_over_a_real_websocket_within_a_second(gateway, tenant):
    seen = _live_roundtrip(gateway.url.replace("http", "ws"), gateway.url, tenant.raw_key)
    assert max(seen.values()) < 1.0, seen


def test_with_redis_a_socket_on_one_process_sees_requests_served_by_another(mock_provider, tenant):
    url = redis_url()
    env = dict(REDIS_URL=url, UPSTREAM_OPENAI_URL=mock_provider.url, LOG_STREAM_KEY=unique_stream_key(),
               LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}")
    watched = Daphne(**env, LOG_WRITER_IN_PROCESS="0").start()
    serving = Daphne(**env).start()  # serves the calls and runs the log writer
    try:
        seen = _live_roundtrip(watched.url.replace("http", "ws"), serving.url, tenant.raw_key)
        assert max(seen.values()) < 1.0, seen
    finally:
        serving.stop()
        watched.stop()
