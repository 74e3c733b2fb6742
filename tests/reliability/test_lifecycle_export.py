"""Exporting an org's data: `manage.py export_org` (a directory or a .zip) and the settings page download."""

import io
import json
import os
import tempfile
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from analytics.models import Feedback, RequestLog, Score
from orgs import audit
from orgs.models import AuditEvent, Role
from prompts.models import Prompt, PromptEnvironment, PromptVersion
from tests.analytics.helpers import make_logs
from tests.base import BaseTestCase

FILES = {"logs.jsonl", "feedback.jsonl", "scores.jsonl", "audit.jsonl", "prompts.json", "org.json", "manifest.json"}


class ExportTests(BaseTestCase):
    def setUp(self):
        self.key, self.raw_key = self.make_key()
        self.logs = make_logs(self.org, n=30, api_key=self.key)
        # A log stored before redaction existed (or by a bug): its credentials must still not leave.
        self.leaky = make_logs(self.org, n=1, seed=2, request_headers={
            "helicone-auth": f"Bearer {self.raw_key}", "authorization": "Bearer sk-provider-secret",
            "content-type": "application/json"})[0]
        make_logs(self.other_org, n=7, seed=9, user_id="charlie-user")
        Feedback.objects.create(org=self.org, request=self.logs[0], rating=True)
        Score.objects.create(org=self.org, request=self.logs[1], name="accuracy", value=0.25)
        prompt = Prompt.objects.create(org=self.org, slug="greeting", name="Greeting")
        versions = [PromptVersion.objects.create(org=self.org, prompt=prompt, version=n, template_hash=str(n),
                                                 messages=[{"role": "user", "content": f"Hi v{n} {{{{name}}}}"}],
                                                 model="gpt-4o-mini") for n in (1, 2)]
        PromptEnvironment.objects.create(org=self.org, prompt=prompt, name="production", version=versions[0])
        Prompt.objects.create(org=self.other_org, slug="secret-plan", name="Charlie's")
        audit.record("org.update", org=self.org, user=self.alice, target=self.org, changes={"name": "Alice Org"})

    def check_export(self, files: dict[str, bytes]) -> None:
        assert set(files) == FILES
        everything = b"".join(files.values()).decode()
        for secret in (self.raw_key, self.key.hashed_key, "sk-provider-secret"):
            assert secret not in everything
        assert "charlie" not in everything.lower()

        logs = [json.loads(line) for line in files["logs.jsonl"].decode().splitlines()]
        assert {log["id"] for log in logs} == {str(log.id) for log in self.logs + [self.leaky]}
        first = next(log for log in logs if log["id"] == str(self.logs[0].id))
        assert first["model"] == self.logs[0].model and first["user_id"] == self.logs[0].user_id
        assert first["api_key_id"] == self.key.id
        leaky = next(log for log in logs if log["id"] == str(self.leaky.id))
        assert leaky["request_headers"] == {"helicone-auth": "[redacted]", "authorization": "[redacted]",
                                            "content-type": "application/json"}

        assert [json.loads(line)["rating"] for line in files["feedback.jsonl"].decode().splitlines()] == [True]
        assert [json.loads(line)["value"] for line in files["scores.jsonl"].decode().splitlines()] == [0.25]
        prompts = json.loads(files["prompts.json"])
        assert [p["id"] for p in prompts] == ["greeting"]
        assert [v["version"] for v in prompts[0]["versions"]] == [1, 2]
        assert prompts[0]["environments"] == {"production": 1}
        actions = [json.loads(line)["action"] for line in files["audit.jsonl"].decode().splitlines()]
        assert "org.update" in actions
        org = json.loads(files["org.json"])
        assert {m["email"] for m in org["members"]} == {"alice@example.org", "bob@example.org"}
        assert [k["key"] for k in org["api_keys"]] == [self.key.masked]
        manifest = json.loads(files["manifest.json"])
        assert manifest["org"] == "alice-org"
        assert manifest["counts"]["logs.jsonl"] == 31
        assert manifest["counts"]["prompts.json"] == 1
        assert manifest["counts"]["audit.jsonl"] == len(actions)

    def test_command_exports_to_a_directory(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = StringIO()
            call_command("export_org", "--org", "alice-org", "--output", f"{tmp}/export", "--chunk-size", "7",
                         stdout=out)
            self.check_export({path.name: path.read_bytes() for path in Path(tmp, "export").iterdir()})
        assert "logs.jsonl: 31" in out.getvalue()
        event = AuditEvent.objects.get(action="org.export")
        assert event.org == self.org and event.changes["via"] == "manage.py export_org"
        assert event.changes["counts"]["logs.jsonl"] == 31

    def test_command_exports_to_a_zip(self):
        with tempfile.TemporaryDirectory() as tmp:
            call_command("export_org", "--org", "alice-org", "--output", f"{tmp}/alice.zip", stdout=StringIO())
            with zipfile.ZipFile(f"{tmp}/alice.zip") as archive:
                assert archive.testzip() is None
                self.check_export({name: archive.read(name) for name in archive.namelist()})

    def test_command_refuses_bad_destinations(self):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "taken.zip").write_bytes(b"x")
            Path(tmp, "full").mkdir()
            Path(tmp, "full", "keep.txt").write_text("x")
            with pytest.raises(CommandError, match="already exists"):
                call_command("export_org", "--org", "alice-org", "--output", f"{tmp}/taken.zip")
            with pytest.raises(CommandError, match="new or empty directory"):
                call_command("export_org", "--org", "alice-org", "--output", f"{tmp}/full")
            with pytest.raises(CommandError, match="no organization with slug 'nope'"):
                call_command("export_org", "--org", "nope", "--output", f"{tmp}/new")
            assert sorted(p.name for p in Path(tmp).iterdir()) == ["full", "taken.zip"]
        assert not AuditEvent.objects.filter(action="org.export").exists()

    def test_owner_downloads_a_streamed_zip(self):
        self.client.force_login(self.alice)
        assert "Export organization data" in self.client.get("/o/alice-org/settings/").content.decode()
        response = self.client.post("/o/alice-org/settings/export/")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/zip"
        assert 'filename="export-alice-org-' in response["Content-Disposition"]
        assert response.streaming
        archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
        self.check_export({name: archive.read(name) for name in archive.namelist()})
        event = AuditEvent.objects.get(action="org.export")
        assert event.actor_user == self.alice and event.changes["via"] == "page"

    def test_download_is_sent_while_it_is_written(self):
        from analytics import lifecycle

        # 40 distinct 16 kB bodies (hex of random bytes: deflate cannot shrink them to nothing).
        for n in range(40):
            make_logs(self.org, n=1, seed=n, request_body=os.urandom(8000).hex())
        pieces = [piece for piece in lifecycle.stream_zip(self.org, chunk_size=5) if piece]
        total = sum(len(piece) for piece in pieces)
        assert total > 300_000
        # Sent in pieces as rows are read, never as one buffered archive.
        assert len(pieces) >= 5 and max(len(piece) for piece in pieces) < total / 3
        archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
        assert json.loads(archive.read("manifest.json"))["counts"]["logs.jsonl"] == 71

    def test_admins_export_from_the_audit_page(self):
        self.bob_membership.role = Role.ADMIN
        self.bob_membership.save(update_fields=["role"])
        self.client.force_login(self.bob)
        assert "/o/alice-org/settings/export/" in self.client.get("/o/alice-org/settings/audit/").content.decode()
        response = self.client.post("/o/alice-org/settings/export/")
        assert response.status_code == 200
        archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
        self.check_export({name: archive.read(name) for name in archive.namelist()})

    def test_members_cannot_export_and_outsiders_get_404(self):
        self.client.force_login(self.bob)
        assert self.client.post("/o/alice-org/settings/export/").status_code == 403
        self.client.force_login(self.charlie)
        assert self.client.post("/o/alice-org/settings/export/").status_code == 404
        self.client.force_login(self.alice)
        assert self.client.get("/o/alice-org/settings/export/").status_code == 405
        assert not AuditEvent.objects.filter(action="org.export").exists()
        assert RequestLog.objects.count() == 38
