"""apply_prompt in process: steady traffic costs no query, changes show at once in this
process, and concurrent recorders of a template agree on one version."""

import threading

from asgiref.sync import async_to_sync
from django.db import connection
from django.test import TransactionTestCase, override_settings

from formats.headers import GatewayOptions
from orgs.models import AuditEvent, Organization
from prompts import actions
from gateway.prompts import apply_prompt, clear_cache
from prompts.models import Prompt, PromptVersion
from tests.base import BaseTestCase, make_personas

FAST = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def apply(org_id: int, payload: dict, **opts):
    return async_to_sync(apply_prompt)(org_id, GatewayOptions(**opts), payload)


class CacheTests(BaseTestCase):
    @classmethod
    def setUpTestData(cls):
        with override_settings(PASSWORD_HASHERS=FAST):
            make_personas(cls)

    def setUp(self):
        clear_cache()
        self.actor = actions.Actor(user=self.alice)
        self.prompt = actions.create_prompt(self.org, actor=self.actor, slug="greet", name="Greet", model="m",
                                            messages=[{"role": "user", "content": "Hi {{name}}"}])

    def test_repeated_managed_requests_cost_no_query(self):
        payload = {"model": "m", "messages": []}
        apply(self.org.id, payload, prompt_id="greet", prompt_variables={"name": "Ann"})
        with self.assertNumQueries(0):
            for _ in range(5):
                applied = apply(self.org.id, payload, prompt_id="greet", prompt_variables={"name": "Ann"})
        self.assertEqual(applied.payload["messages"], [{"role": "user", "content": "Hi Ann"}])
        self.assertEqual(applied.version, 1)

    def test_repeated_requests_from_code_cost_no_query_once_recorded(self):
        payload = {"model": "m", "messages": [{"role": "user", "content": "Bye {{name}}"}]}
        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(apply(self.org.id, payload, prompt_id="bye", prompt_variables={"name": "A"}).version, 1)
        apply(self.org.id, payload, prompt_id="bye", prompt_variables={"name": "B"})
        with self.assertNumQueries(0):
            applied = apply(self.org.id, payload, prompt_id="bye", prompt_variables={"name": "C"})
        self.assertEqual((applied.version, applied.payload["messages"][0]["content"]), (1, "Bye C"))

    def test_unknown_prompt_is_cached_too(self):
        payload = {"model": "m", "messages": [{"role": "user", "content": "plain"}]}
        apply(self.org.id, payload, prompt_id="nope")
        with self.assertNumQueries(0):
            applied = apply(self.org.id, payload, prompt_id="nope")
        self.assertEqual((applied.prompt_id, applied.version, applied.payload), ("nope", None, payload))

    def test_a_change_in_this_process_is_seen_at_once(self):
        payload = {"model": "m", "messages": []}
        self.assertEqual(apply(self.org.id, payload, prompt_id="greet", prompt_variables={"name": "A"}).version, 1)
        with self.captureOnCommitCallbacks(execute=True):
            actions.create_version(self.org, self.prompt, actor=self.actor, model="m",
                                   messages=[{"role": "user", "content": "Hello {{name}}"}])
        applied = apply(self.org.id, payload, prompt_id="greet", prompt_variables={"name": "A"})
        self.assertEqual((applied.version, applied.payload["messages"][0]["content"]), (2, "Hello A"))
        with self.captureOnCommitCallbacks(execute=True):
            actions.set_environment(self.org, self.prompt, actor=self.actor, name="production", version=1)
        self.assertEqual(apply(self.org.id, payload, prompt_id="greet", prompt_variables={"name": "A"}).version, 1)

    def test_org_is_part_of_the_key(self):
        payload = {"model": "m", "messages": [{"role": "user", "content": "mine"}]}
        apply(self.org.id, {"model": "m", "messages": []}, prompt_id="greet", prompt_variables={"name": "A"})
        applied = apply(self.other_org.id, payload, prompt_id="greet", prompt_variables={"name": "A"})
        self.assertEqual((applied.version, applied.payload), (None, payload))


class ConcurrentRecordingTests(TransactionTestCase):
    """Each thread has its own database connection, as separate gateway processes would."""

    def setUp(self):
        self.org = Organization.objects.create(name="Race", slug="race-org")

    def run_threads(self, templates: list[list]) -> list[int]:
        barrier = threading.Barrier(len(templates))
        results: list = [None] * len(templates)

        def work(i: int) -> None:
            try:
                barrier.wait()
                results[i] = actions.record_template(self.org.id, "race", messages=templates[i], model="m")
            except Exception as exc:  # surfaced by the assertion below
                results[i] = exc
            finally:
                connection.close()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(templates))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def test_the_same_new_template_is_recorded_once(self):
        template = [{"role": "user", "content": "{{x}}"}]
        results = self.run_threads([template] * 8)
        self.assertEqual(results, [1] * 8)
        self.assertEqual(Prompt.objects.filter(org=self.org, slug="race").count(), 1)
        self.assertEqual(PromptVersion.objects.filter(prompt__org=self.org).count(), 1)
        self.assertEqual(AuditEvent.objects.filter(org=self.org, action="prompt.create").count(), 1)

    def test_different_templates_get_distinct_numbers(self):
        templates = [[{"role": "user", "content": f"{{{{x}}}} #{i}"}] for i in range(6)]
        results = self.run_threads(templates)
        self.assertEqual(sorted(results), [1, 2, 3, 4, 5, 6], results)
        self.assertEqual(AuditEvent.objects.filter(org=self.org, action__startswith="prompt.").count(), 6)
