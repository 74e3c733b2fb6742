"""Data lifecycle: retention purges, erasing one end user's data, exporting an org.

Deletions run in short transactions of at most `batch_size` logs, chosen through the
(org, created_at) or (org, user_id) index, so a purge of millions of rows never holds
long locks and can run from cron while the log writer inserts. Each is audited with
counts only, never the content (nor the erased user id: its hash).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from orgs import audit
from orgs.models import ApiKey, AuditEvent, Membership, Organization

from . import clickhouse, rollups, semantic_store
from .models import AlertEvent, Feedback, RequestLog, Score, WebhookDelivery

DEFAULT_BATCH_SIZE = 5000
EXPORT_FORMAT = 1
# Credentials never leave the system, even from logs stored before headers were redacted:
# broader than the gateway's own list, so a provider's new credential header is caught too.
SECRET_HEADER_WORDS = ("auth", "key", "cookie", "token", "secret", "signature")

Progress = Callable[[int, int], None]  # (batch number, rows deleted so far)


# --- Deleting logs in batches ---------------------------------------------------------------


def delete_logs_in_batches(logs: models.QuerySet[RequestLog], *, batch_size: int = DEFAULT_BATCH_SIZE,
                           progress: Progress | None = None) -> dict[str, int]:
    """Delete the logs (with their feedback and scores) in primary-key chunks; returns counts per model.

    Each chunk is one transaction: an interruption leaves whole batches deleted, never half of one.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    counts = {"requests": 0, "feedback": 0, "scores": 0}
    batch = 0
    while True:
        with transaction.atomic():
            # Locked first: feedback or a property written meanwhile waits for the batch, never
            # half-applies to a deleted log. Rows another transaction holds are left to a later run.
            rows = list(logs.order_by("created_at").select_for_update(skip_locked=True)
                        .only(*rollups.LOG_FIELDS)[:batch_size])
            ids = [row.id for row in rows]
            if ids:
                counts["feedback"] += Feedback.objects.filter(request_id__in=ids).delete()[0]
                counts["scores"] += Score.objects.filter(request_id__in=ids).delete()[0]
                counts["requests"] += RequestLog.objects.filter(id__in=ids).delete()[0]
                rollups.subtract(rows)  # the same transaction: the rollups never count a deleted log
                if clickhouse.enabled():  # before the commit: if ClickHouse fails, nothing is deleted
                    from .clickhouse import changes

                    for org_id in {row.org_id for row in rows}:
                        changes.delete(org_id, [row.id for row in rows if row.org_id == org_id])
        if not ids:
            break
        batch += 1
        if progress:
            progress(batch, counts["requests"])
        if len(ids) < batch_size:
            break
    return counts


def _delete_logs(org: Organization, logs: models.QuerySet[RequestLog], *, batch_size: int,
                 progress: Progress | None, user_id: str | None = None, before: datetime | None = None
                 ) -> dict[str, int]:
    """The org's logs `logs` selects deleted: from SQL (and ClickHouse beside it), or, with ClickHouse
    as the only log store, from ClickHouse (where the same selection is one user's, or older than),
    and then from what SQL still holds of them."""
    if clickhouse.only():
        from .clickhouse import changes

        counts = changes.erase(org.pk, user_id=user_id, before=before, batch_size=max(batch_size, 1))
        if progress and counts["requests"]:
            progress(1, counts["requests"])
        # The SQL copy a dual write left (CLICKHOUSE_ONLY=0 before), or logs from before ClickHouse
        # was turned on, go too: an erase or a purge leaves no copy anywhere. One index probe if none.
        if logs.exists():
            left = delete_logs_in_batches(logs, batch_size=batch_size)
            counts["feedback"] += left["feedback"]
            counts["scores"] += left["scores"]
            counts["sql_copy_requests"] = left["requests"]
        return counts
    return delete_logs_in_batches(logs, batch_size=batch_size, progress=progress)


# --- Retention ------------------------------------------------------------------------------


def retention_days(org: Organization) -> int | None:
    """The org's own retention, else the LOG_RETENTION_DAYS default; None keeps logs forever."""
    return org.retention_days or getattr(settings, "LOG_RETENTION_DAYS", None)


@dataclass
class PurgePlan:
    org: Organization
    days: int
    cutoff: datetime
    logs: models.QuerySet[RequestLog] = field(repr=False)

    def count(self) -> int:
        """How many logs the plan would delete (`purge_logs --dry-run`): SQL holds none in only mode."""
        if clickhouse.only():
            from .clickhouse import rows
            from .queries import Selection

            return rows.count(Selection(self.org, end=self.cutoff))
        return self.logs.count()


def purge_plan(org: Organization, now: datetime | None = None) -> PurgePlan | None:
    """What retention would delete for the org now, or None when it keeps logs forever."""
    days = retention_days(org)
    if not days:
        return None
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return PurgePlan(org, days, cutoff, RequestLog.objects.filter(org=org, created_at__lt=cutoff))


def purge(plan: PurgePlan, *, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None) -> int:
    """Delete the plan's logs in batches; audited once for the org when anything was deleted."""
    counts = _delete_logs(plan.org, plan.logs, batch_size=batch_size, progress=progress, before=plan.cutoff)
    if not clickhouse.only():  # SQL keeps no rollup then (the deletes took the logs out of ClickHouse's)
        rollups.forget_empty(plan.org.pk, plan.cutoff)
    # The semantic cache's questions are prompt text: they go with the logs they came from.
    counts["semantic_cache_entries"] = semantic_store.delete_older(plan.org.pk, plan.cutoff)
    if counts["requests"] or counts["semantic_cache_entries"]:
        audit.record("logs.purge", org=plan.org, target=plan.org,
                     changes={**counts, "retention_days": plan.days, "older_than": plan.cutoff.isoformat(),
                              "via": "manage.py purge_logs"})
    return counts["requests"]


# --- Erasing one end user -------------------------------------------------------------------


# What the apps above this one keep of an end user, erased with the user's logs: a name (the
# key in erase_user's counts) -> eraser(org_id, user_id) returning how many items it removed.
# The gateway registers its rate-limit counters here (GatewayConfig.ready).
_user_erasers: dict[str, Callable[[int, str], int]] = {}


def register_user_eraser(name: str, eraser: Callable[[int, str], int]) -> None:
    _user_erasers[name] = eraser


def user_fingerprint(user_id: str) -> str:
    """What the audit log keeps of an erased user id: enough to confirm a request, not to recover it."""
    return "sha256:" + hashlib.sha256(user_id.encode()).hexdigest()[:16]


def erase_user(org: Organization, user_id: str, *, via: str, user=None, api_key: ApiKey | None = None,
               request=None, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None
               ) -> dict[str, int]:
    """Erase everything stored about one end user (`Helicone-User-Id`) in one org; returns counts.

    Logs with their feedback and scores, the user's semantic cache entries, request-webhook
    deliveries that carry the user's requests, alert events grouped by the user, and the user's
    rate-limit counters.
    """
    if not user_id:
        raise ValueError("user_id must not be empty")
    counts = _delete_logs(org, RequestLog.objects.filter(org=org, user_id=user_id), batch_size=batch_size,
                          progress=progress, user_id=user_id)
    counts["semantic_cache_entries"] = semantic_store.delete_for_user(org.id, user_id)
    # Webhook bodies are compact JSON (webhooks.request_payload): the user id appears exactly so.
    marker = '"user_id":' + json.dumps(user_id, cls=DjangoJSONEncoder)
    with transaction.atomic():
        counts["webhook_deliveries"] = WebhookDelivery.objects.filter(
            org=org, event_type="request.logged", body__contains=marker).delete()[0]
        counts["alert_events"] = AlertEvent.objects.filter(
            org=org, rule__group_by="user", group_key=user_id).delete()[0]
        audit.record("end_user.erase", request=request, org=org, user=user, api_key=api_key,
                     target_type="end_user", target_id=user_fingerprint(user_id),
                     changes={**counts, "via": via})
    for name, eraser in _user_erasers.items():
        try:
            counts[name] = eraser(org.id, user_id)
        except Exception:  # Redis down: rate-limit counters expire with their window anyway
            counts[name] = 0
    return counts


# --- Export ---------------------------------------------------------------------------------


def _json_line(value: dict[str, Any]) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":")) + "\n"


def _is_secret_header(name: str) -> bool:
    return any(word in name.lower() for word in SECRET_HEADER_WORDS)


def log_record(log: RequestLog) -> dict[str, Any]:
    """Every column of a log; credential headers redacted whatever was stored."""
    record = {f.attname: getattr(log, f.attname) for f in RequestLog._meta.concrete_fields}
    headers = record.get("request_headers") or {}
    if isinstance(headers, dict):
        record["request_headers"] = {k: "[redacted]" if _is_secret_header(str(k)) else v for k, v in headers.items()}
    return record


def prompts_document(org: Organization) -> list[dict[str, Any]]:
    from prompts.models import Prompt

    prompts = Prompt.objects.filter(org=org).prefetch_related("versions", "environments__version")
    return [{
        "id": prompt.slug, "name": prompt.name, "description": prompt.description, "source": prompt.source,
        "created_at": prompt.created_at, "updated_at": prompt.updated_at,
        "versions": [{
            "version": v.version, "messages": v.messages, "model": v.model, "parameters": v.parameters,
            "variables": v.variables, "message": v.message, "author": v.author_label, "created_at": v.created_at,
        } for v in sorted(prompt.versions.all(), key=lambda v: v.version)],
        "environments": {env.name: env.version.version for env in prompt.environments.all()},
    } for prompt in prompts]


def org_document(org: Organization) -> dict[str, Any]:
    """The org, its members and its API keys (masked: never a hash)."""
    return {
        "slug": org.slug, "name": org.name, "created_at": org.created_at, "retention_days": org.retention_days,
        "rate_limit_policy": org.rate_limit_policy, "require_2fa": org.require_2fa,
        "members": [{"email": m.user.email, "role": m.role, "since": m.created_at}
                    for m in Membership.objects.filter(org=org).select_related("user").order_by("created_at")],
        "api_keys": [{"id": k.id, "name": k.name, "key": k.masked, "scopes": k.scopes, "created_at": k.created_at,
                      "last_used_at": k.last_used_at, "revoked_at": k.revoked_at}
                     for k in ApiKey.objects.filter(org=org).order_by("created_at")],
    }


def audit_record(event: AuditEvent) -> dict[str, Any]:
    return {"created_at": event.created_at, "action": event.action, "actor": event.actor_label,
            "target_type": event.target_type, "target_id": event.target_id, "changes": event.changes,
            "ip": event.ip, "user_agent": event.user_agent}


class Exporter:
    """Writes an org's data file by file into a sink: `open(name)` gives a text stream.

    `write()` is a generator that yields after every chunk of rows, so a streaming
    response can send what is written so far; every table is read with `.iterator()`.
    """

    def __init__(self, org: Organization, chunk_size: int = 2000):
        self.org = org
        self.chunk_size = chunk_size
        self.counts: dict[str, int] = {}

    def _jsonl(self, out: TextIO, name: str, rows: Iterator[dict[str, Any]]) -> Iterator[None]:
        count = 0
        for row in rows:
            out.write(_json_line(row))
            count += 1
            if count % self.chunk_size == 0:
                yield
        self.counts[name] = count

    def write(self, open_member: Callable[[str], TextIO]) -> Iterator[None]:
        org, size = self.org, self.chunk_size
        if clickhouse.enabled():
            from .clickhouse import rows

            logs = rows.every(org.pk, size)
        else:
            logs = RequestLog.objects.filter(org=org).order_by("created_at").iterator(chunk_size=size)
        tables = {
            "logs.jsonl": (log_record(log) for log in logs),
            "feedback.jsonl": ({"request_id": f.request_id, "rating": f.rating, "created_at": f.created_at,
                                "updated_at": f.updated_at}
                               for f in Feedback.objects.filter(org=org).order_by("id").iterator(chunk_size=size)),
            "scores.jsonl": ({"request_id": s.request_id, "name": s.name, "value": s.as_json(),
                              "updated_at": s.updated_at}
                             for s in Score.objects.filter(org=org).order_by("id").iterator(chunk_size=size)),
            "audit.jsonl": (audit_record(e) for e in
                            AuditEvent.objects.filter(org=org).order_by("created_at", "id").iterator(chunk_size=size)),
        }
        for name, rows in tables.items():
            with open_member(name) as out:
                yield from self._jsonl(out, name, rows)
        prompts = prompts_document(org)
        self.counts["prompts.json"] = len(prompts)
        for name, document in (("prompts.json", prompts), ("org.json", org_document(org))):
            with open_member(name) as out:
                json.dump(document, out, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2)
            yield
        manifest = {"format": EXPORT_FORMAT, "org": org.slug, "exported_at": timezone.now(),
                    "counts": self.counts}
        with open_member("manifest.json") as out:
            json.dump(manifest, out, cls=DjangoJSONEncoder, indent=2)


def export_to_directory(org: Organization, directory: Path, chunk_size: int = 2000) -> dict[str, int]:
    directory.mkdir(parents=True, exist_ok=True)
    exporter = Exporter(org, chunk_size)
    for _ in exporter.write(lambda name: open(directory / name, "w", encoding="utf-8")):
        pass
    return exporter.counts


def _zip_member(archive: zipfile.ZipFile) -> Callable[[str], TextIO]:
    def open_member(name: str) -> TextIO:
        # force_zip64: a logs.jsonl past 2 GiB must not fail half way through the stream.
        raw = archive.open(name, "w", force_zip64=True)
        return io.TextIOWrapper(raw, encoding="utf-8", write_through=True)

    return open_member


def export_to_zip(org: Organization, path: Path, chunk_size: int = 2000) -> dict[str, int]:
    exporter = Exporter(org, chunk_size)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for _ in exporter.write(_zip_member(archive)):
            pass
    return exporter.counts


class _Pipe(io.RawIOBase):
    """An unseekable sink whose bytes are taken away as they are written (zipfile streams to it)."""

    def __init__(self):
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def stream_zip(org: Organization, chunk_size: int = 2000) -> Iterator[bytes]:
    """The export as a zip, produced chunk by chunk (memory stays flat whatever the org's size)."""
    pipe = _Pipe()
    exporter = Exporter(org, chunk_size)
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for _ in exporter.write(_zip_member(archive)):
            data = pipe.take()
            if data:
                yield data
    yield pipe.take()


def record_export(org: Organization, *, via: str, user=None, request=None, counts: dict[str, int] | None = None
                  ) -> AuditEvent:
    changes: dict[str, Any] = {"via": via}
    if counts is not None:
        changes["counts"] = counts
    return audit.record("org.export", request=request, org=org, user=user, target=org, changes=changes)
