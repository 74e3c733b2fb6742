from django.db import migrations


def drop_body_trigram_indexes(apps, schema_editor):
    # Trigram indexes on the bodies halve the log writer's throughput; they are now
    # opt-in (`manage.py body_search_index --enable`).
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in ("log_req_body_trgm", "log_resp_body_trgm"):
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0004_alerts_webhooks"),
    ]

    operations = [
        migrations.RunPython(drop_body_trigram_indexes, migrations.RunPython.noop),
    ]
