"""Weekly rollups (analytics.rollups: every dimension but sessions), built from the daily ones
the earlier version kept, so an installation's existing rollups stay complete. Run it with the
log writers stopped (as every migration); otherwise run `manage.py rebuild_rollups` after it."""

import json
from datetime import timedelta

from django.db import migrations, models

SCALARS = ("requests", "errors", "cache_hits", "unpriced", "prompt_tokens", "completion_tokens", "cached_tokens",
           "cost_usd", "saved_usd")
CAP = 10_000  # values per week and dimension; users and the all-logs row are never capped
UNCAPPED = ("", "user")


def _merge_sketch(into: dict, other: dict | str | None) -> dict:
    """analytics.sketch.merge_json, frozen here: bucket counts, count and sum add up; extremes don't.
    (A sketch is a dict here, or JSON text once migration 0012 has made the columns text.)"""
    if isinstance(other, str):
        other = json.loads(other)
    for key, value in (other or {}).items():
        if key == "lo":
            into[key] = min(into.get(key, value), value)
        elif key == "hi":
            into[key] = max(into.get(key, value), value)
        else:
            into[key] = into.get(key, 0) + value
    return into


def _week(bucket):
    return bucket - timedelta(days=bucket.weekday())


def _add(into: dict, row) -> None:
    for name in SCALARS:
        into[name] = into.get(name, 0) + getattr(row, name)
    into["latency"] = _merge_sketch(into.setdefault("latency", {}), row.latency)
    into["ttft"] = _merge_sketch(into.setdefault("ttft", {}), row.ttft)
    for name, pick in (("first_at", min), ("last_at", max)):
        value = getattr(row, name)
        if value is not None:
            into[name] = value if into.get(name) is None else pick(into[name], value)


def build_weeks(apps, schema_editor):
    Rollup = apps.get_model("analytics", "Rollup")
    for org_id in Rollup.objects.filter(grain="d").values_list("org_id", flat=True).distinct().order_by():
        weeks: dict[tuple, dict] = {}
        days = Rollup.objects.filter(org_id=org_id, grain="d").exclude(dim="session").order_by("bucket", "id")
        for row in days.iterator(chunk_size=2000):
            _add(weeks.setdefault((_week(row.bucket), row.dim, row.overflow, row.value), {}), row)
        values: dict[tuple, list] = {}
        for key, measures in weeks.items():
            if not key[2]:
                values.setdefault(key[:2], []).append((-measures["requests"], key[3]))
        for (week, dim), found in values.items():
            if dim in UNCAPPED or len(found) <= CAP:
                continue
            for _, value in sorted(found)[CAP:]:  # the busiest keep rows of their own
                folded = weeks.pop((week, dim, False, value))
                folded["first_at"] = folded["last_at"] = None
                target = weeks.setdefault((week, dim, True, ""), {})
                for name in SCALARS:
                    target[name] = target.get(name, 0) + folded[name]
                target["latency"] = _merge_sketch(target.setdefault("latency", {}), folded["latency"])
                target["ttft"] = _merge_sketch(target.setdefault("ttft", {}), folded["ttft"])
        if Rollup._meta.get_field("latency").get_internal_type() == "TextField":
            for measures in weeks.values():
                measures["latency"], measures["ttft"] = json.dumps(measures["latency"]), json.dumps(measures["ttft"])
        rows = [Rollup(org_id=org_id, grain="w", bucket=week, dim=dim, overflow=overflow, value=value, **measures)
                for (week, dim, overflow, value), measures in weeks.items()]
        Rollup.objects.filter(org_id=org_id, grain="w").delete()
        Rollup.objects.bulk_create(rows, batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ("analytics", "0010_semantic_cache"),
    ]

    operations = [
        migrations.AlterField(
            model_name="rollup",
            name="grain",
            field=models.CharField(help_text="m: minute, h: hour, d: day, w: week (from Monday)", max_length=1),
        ),
        migrations.RunPython(build_weeks, migrations.RunPython.noop),
    ]
