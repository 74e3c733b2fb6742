"""POST /api/v1/log: a call made without the proxy is priced, stored and shown like a proxied one."""

import time
import uuid

from analytics.models import RequestLog
from tests.base import BaseTestCase

from .helpers import create_log


def body(**meta):
    start = time.time() - 2
    return {
        "providerRequest": {
            "url": "https://api.openai.com/v1/chat/completions",
            "json": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]},
            "meta": meta,
        },
        "providerResponse": {
            "status": 200,
            "headers": {"content-type": "application/json"},
            "json": {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}},
        },
        "timing": {"startTime": {"seconds": int(start), "milliseconds": 0},
                   "endTime": {"seconds": int(start) + 1, "milliseconds": 250}},
    }


class ManualLogTests(BaseTestCase):
    def setUp(self):
        self.key, self.raw = self.make_key(scopes=["proxy"])

    def post(self, data, raw=None):
        return self.client.post("/api/v1/log", data, content_type="application/json",
                                HTTP_AUTHORIZATION=f"Bearer {raw or self.raw}")

    def test_logged_priced_and_tagged(self):
        request_id = str(uuid.uuid4())
        response = self.post(body(**{"Helicone-User-Id": "ana", "Helicone-Property-Feature": "chat",
                                     "Helicone-Session-Id": "s-9", "Helicone-Request-Id": request_id}))
        assert response.status_code == 201, response.content
        assert response.json()["id"] == request_id
        log = RequestLog.objects.get(id=request_id)
        assert log.org == self.org and log.api_key == self.key
        assert log.provider == "openai" and log.model == "gpt-4o-mini-2024-07-18"
        assert log.requested_model == "gpt-4o-mini"
        assert (log.prompt_tokens, log.completion_tokens) == (1000, 500)
        assert log.cost_usd is not None and log.cost_usd > 0
        assert response.json()["cost_usd"] == float(log.cost_usd)
        assert abs(log.latency_ms - 1250) < 1
        assert log.user_id == "ana" and log.session_id == "s-9" and log.properties == {"Feature": "chat"}
        _, reader = self.make_key(scopes=["read"])
        detail = self.client.get(f"/api/v1/requests/{request_id}", HTTP_AUTHORIZATION=f"Bearer {reader}").json()
        assert detail["response_body"]["choices"][0]["message"]["content"] == "Hi!"
        assert detail["request_body"]["messages"][0]["content"] == "Hello there"

    def test_errors_and_bad_bodies(self):
        data = body()
        data["providerResponse"]["status"] = 429
        data["providerResponse"]["json"] = {"error": {"message": "slow down"}}
        response = self.post(data)
        assert response.status_code == 201
        log = RequestLog.objects.get(id=response.json()["id"])
        assert log.status == 429 and "slow down" in log.error
        assert self.post(body(**{"Helicone-Request-Id": "nope"})).status_code == 400
        assert self.post({"providerRequest": {}}).status_code == 422
        bad_timing = body()
        bad_timing["timing"] = {"startTime": "yesterday"}
        assert self.post(bad_timing).status_code == 400

    def test_needs_a_proxy_or_write_key(self):
        _, read_only = self.make_key(scopes=["read"])
        assert self.post(body(), raw=read_only).status_code == 403
        assert self.client.post("/api/v1/log", body(), content_type="application/json").status_code == 401
        _, writer = self.make_key(scopes=["write"])
        assert self.post(body(), raw=writer).status_code == 201

    def test_an_id_used_by_another_org_is_refused(self):
        foreign = create_log(org=self.other_org, provider="openai", model="m", status=200)
        response = self.post(body(**{"Helicone-Request-Id": str(foreign.id)}))
        assert response.status_code == 400
        assert RequestLog.objects.get(id=foreign.id).org == self.other_org
