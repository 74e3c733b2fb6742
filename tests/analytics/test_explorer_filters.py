"""The explorer's filter builder (issue #22 item 3): conditions on columns and properties with
= ≠ contains > <, AND or OR, chips that remove one condition, all in the URL; the simple
parameters of older links keep working; a bad condition is a 400 naming what is wrong."""

from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

from django.utils import timezone

from analytics.models import RequestLog
from tests.base import BaseTestCase

from .helpers import create_log, store

URL = "/o/alice-org/requests/"


class ExplorerConditionsTests(BaseTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        now = timezone.now()
        specs = {
            "fast-cheap": dict(model="gpt-4o-mini", provider="openai", status=200, latency_ms=120, ttft_ms=40,
                               cost_usd=Decimal("0.0001"), prompt_tokens=10, completion_tokens=5, user_id="ana",
                               properties={"Env": "prod", "Feature": "chat", "contains": "yes", "Plan": 3},
                               path="/v1/chat/completions",
                               source="proxy", request_name="greet", session_id="s1"),
            "slow-dear": dict(model="gpt-4o", provider="openai", status=200, latency_ms=2500, ttft_ms=900,
                              cost_usd=Decimal("0.02"), prompt_tokens=1500, completion_tokens=700, user_id="bea",
                              properties={"Env": "staging", "Feature": "search"}, path="/v1/chat/completions",
                              source="log", cache_hit=True),
            "failed": dict(model="claude-3-5-haiku", provider="anthropic", status=529, latency_ms=None,
                           cost_usd=None, prompt_tokens=None, completion_tokens=None, user_id="ana",
                           properties={}, path="/v1/messages", source="otlp"),
        }
        cls.logs = {}
        for minutes, (name, values) in enumerate(specs.items(), start=1):
            cls.logs[name] = store([RequestLog(org=cls.org, created_at=now - timedelta(minutes=minutes),
                                               **values)])[0]
        # Outside the default 24 hours: an OR never reaches past the range.
        cls.old = create_log(org=cls.org, model="gpt-4o", provider="openai", status=200, latency_ms=5000,
                             created_at=now - timedelta(days=3))
        cls.foreign = create_log(org=cls.other_org, model="gpt-4o", provider="openai", status=200, latency_ms=9000)

    def setUp(self):
        self.client.force_login(self.bob)

    def names(self, *conditions: str, **params) -> set[str]:
        response = self.client.get(URL, {"f": list(conditions), **params})
        assert response.status_code == 200, response.content.decode()[:2000]
        ids = {log.id for log in response.context["rows"]}
        return {name for name, log in self.logs.items() if log.id in ids} | ({"old"} if self.old.id in ids else set())

    def test_text_conditions(self):
        assert self.names("model:eq:gpt-4o") == {"slow-dear"}
        assert self.names("model:ne:gpt-4o") == {"fast-cheap", "failed"}
        assert self.names("model:contains:GPT") == {"fast-cheap", "slow-dear"}
        assert self.names("provider:eq:anthropic") == {"failed"}
        assert self.names("user_id:eq:ana") == {"fast-cheap", "failed"}
        assert self.names("session_id:eq:s1") == {"fast-cheap"}
        assert self.names("request_name:contains:gre") == {"fast-cheap"}
        assert self.names("path:contains:messages") == {"failed"}
        assert self.names("source:eq:log") == {"slow-dear"}
        assert self.names("cache_hit:eq:true") == {"slow-dear"}
        assert self.names("cache_hit:ne:true") == {"fast-cheap", "failed"}

    def test_number_conditions(self):
        assert self.names("latency_ms:gt:1000") == {"slow-dear"}
        assert self.names("latency_ms:lt:1000") == {"fast-cheap"}  # an unmeasured latency is neither
        assert self.names("latency_ms:ne:120") == {"slow-dear", "failed"}  # ≠ keeps the unmeasured
        assert self.names("ttft_ms:eq:900") == {"slow-dear"}
        assert self.names("cost_usd:gt:0.001") == {"slow-dear"}
        assert self.names("cost_usd:lt:0.001") == {"fast-cheap"}
        assert self.names("prompt_tokens:gt:100") == {"slow-dear"}
        assert self.names("completion_tokens:lt:10") == {"fast-cheap"}
        assert self.names("total_tokens:eq:15") == {"fast-cheap"}
        assert self.names("total_tokens:gt:2000") == {"slow-dear"}
        assert self.names("status:gt:500") == {"failed"}
        assert self.names("status:eq:error") == {"failed"}
        assert self.names("status:ne:error") == {"fast-cheap", "slow-dear"}

    def test_property_conditions(self):
        assert self.names("property.Env:eq:prod") == {"fast-cheap"}
        assert self.names("property.Env:ne:prod") == {"slow-dear", "failed"}  # ≠ keeps logs without the property
        assert self.names("property.Feature:contains:SEA") == {"slow-dear"}
        assert self.names("property.Missing:eq:x") == set()
        # A property sent as a number equals its text; a property named like a lookup is still a key.
        assert self.names("property.Plan:eq:3") == {"fast-cheap"}
        assert self.names("property.Plan:ne:3") == {"slow-dear", "failed"}
        assert self.names("property.contains:eq:yes") == {"fast-cheap"}
        assert self.names("property.contains:contains:YE") == {"fast-cheap"}
        assert self.names("property.contains:ne:yes", "property.in:ne:x") == {"slow-dear", "failed"}

    def test_and_or_stay_in_the_range(self):
        assert self.names("model:contains:gpt", "latency_ms:lt:1000") == {"fast-cheap"}
        assert self.names("model:eq:gpt-4o", "provider:eq:anthropic", join="or") == {"slow-dear", "failed"}
        # The 3-day-old gpt-4o log matches the condition but not the range; another org's never.
        assert self.names("latency_ms:gt:3000", "model:eq:gpt-4o", join="or") == {"slow-dear"}
        assert self.names("latency_ms:gt:3000", "model:eq:gpt-4o", join="or", range="7d") == {"slow-dear", "old"}

    def test_old_simple_links_keep_working_and_combine_with_conditions(self):
        assert self.names(model="gpt-4o") == {"slow-dear"}
        assert self.names(status="error") == {"failed"}
        assert self.names(user_id="ana", status="error") == {"failed"}
        assert self.names(prop_key="Env", prop_value="prod") == {"fast-cheap"}
        # The simple parameters are ANDed with the conditions, even when the conditions are ORed.
        assert self.names("model:eq:gpt-4o", "provider:eq:anthropic", join="or", user_id="ana") == {"failed"}

    def test_chips_show_each_condition_and_remove_one(self):
        response = self.client.get(URL, {"f": ["latency_ms:gt:100", "property.Env:eq:prod"], "join": "or",
                                          "model": "gpt-4o-mini"})
        chips = response.context["chips"]
        assert [chip["label"] for chip in chips] == ["Latency (ms) > 100", "property Env = prod"]
        html = response.content.decode()
        assert "Latency (ms) &gt; 100" in html and 'class="filter-join">OR<' in html
        removed = parse_qs(urlsplit(chips[0]["remove"]).query)
        assert removed == {"f": ["property.Env:eq:prod"], "join": ["or"], "model": ["gpt-4o-mini"]}
        assert self.client.get(URL + chips[0]["remove"]).context["chips"][0]["label"] == "property Env = prod"
        # Paging and sorting keep the conditions.
        assert "f=latency_ms%3Agt%3A100" in response.context["query"]

    def test_simple_parameters_show_as_chips_too(self):
        response = self.client.get(URL, {"model": "gpt-4o", "status": "error", "prop_key": "Env", "prop_value": "prod",
                                         "f": "latency_ms:gt:1"})
        chips = {chip["label"]: chip["remove"] for chip in response.context["simple_chips"]}
        assert list(chips) == ["Model = gpt-4o", "Status = error", "property Env = prod"]
        assert parse_qs(urlsplit(chips["property Env = prod"]).query) == {
            "model": ["gpt-4o"], "status": ["error"], "f": ["latency_ms:gt:1"]}
        assert 'id="filter-clear" href="?model=gpt-4o&amp;status=error&amp;prop_key=Env&amp;prop_value=prod"' in (
            response.content.decode())

    def test_the_builder_form_adds_a_condition_to_the_url(self):
        response = self.client.get(URL, {"f": "model:contains:gpt", "user_id": "", "add_field": "latency_ms",
                                         "add_op": "gt", "add_value": " 1000 ", "join": "and", "page": "2"})
        assert response.status_code == 302
        query = parse_qs(urlsplit(response["Location"]).query)
        assert query == {"f": ["model:contains:gpt", "latency_ms:gt:1000"]}  # blanks, page and builder gone
        response = self.client.get(URL, {"add_field": "property", "add_key": "Env", "add_op": "ne",
                                         "add_value": "prod"})
        assert parse_qs(urlsplit(response["Location"]).query) == {"f": ["property.Env:ne:prod"]}
        # An empty value (the form's Apply) adds nothing.
        response = self.client.get(URL, {"add_field": "model", "add_op": "eq", "add_value": "", "model": "x"})
        assert parse_qs(urlsplit(response["Location"]).query) == {"model": ["x"]}

    def test_a_bad_condition_is_a_400_naming_it(self):
        cases = {
            "latency_ms:gt:fast": "latency_ms compares with a number",
            "model:gt:5": "model takes = (eq), ≠ (ne), contains (contains)",
            "colour:eq:red": "unknown field 'colour'",
            "model=gpt": "write it as field:op:value",
            "cache_hit:eq:maybe": "cache_hit is true or false",
            "property.:eq:x": "name it as property.<Name>",
            "property.Env:gt:3": "Env takes",
            "cost_usd:lt:NaN": "cost_usd compares with a number",
        }
        for condition, message in cases.items():
            with self.subTest(condition=condition):
                response = self.client.get(URL, {"f": condition})
                assert response.status_code == 400
                assert message in response.content.decode().replace("&#x27;", "'").replace("&lt;", "<").replace(
                    "&gt;", ">"), response.content.decode()
                assert response.context["rows"] == []
        response = self.client.get(URL, {"f": "model:eq:x", "join": "xor"})
        assert response.status_code == 400 and "Invalid &#x27;join&#x27;" in response.content.decode()
        response = self.client.get(URL, {"add_field": "ttft_ms", "add_op": "contains", "add_value": "3"})
        assert response.status_code == 400 and "ttft_ms takes" in response.content.decode()
        response = self.client.get(URL, {"f": ["model:eq:x"] * 21})
        assert response.status_code == 400 and "Too many conditions" in response.content.decode()

    def test_an_outsider_gets_404(self):
        self.client.force_login(self.charlie)
        assert self.client.get(URL, {"f": "latency_ms:gt:1"}).status_code == 404
