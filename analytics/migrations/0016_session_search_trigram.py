"""PostgreSQL: a trigram index on the sessions' all-time rows' ids and names, so a session search
finds its few matches (or none) without reading every session of the range. It needs the pg_trgm
extension (part of PostgreSQL's own distribution; trusted, so a database owner may create it): a
database that refuses it keeps working without the index (the search then walks the sessions in
order, as on SQLite).
The search compares with ILIKE (analytics.rollup_reads), on the columns themselves: their
statistics let the planner walk the index of the order for a term most sessions match, and this
one for a rare term (Django's icontains, UPPER(column) LIKE, has no statistics to choose by)."""

from django.db import migrations

INDEX = "rollup_alltime_search"


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT trigram")
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except Exception as exc:  # noqa: BLE001  no right to create it: no index, the search still works
            cursor.execute("ROLLBACK TO SAVEPOINT trigram")
            print(f"\n  analytics.0016: pg_trgm is not available ({exc}); session search works without its index")
            return
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON analytics_rollup "
                       "USING gin (value gin_trgm_ops, label gin_trgm_ops) WHERE grain = 'a'")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("analytics", "0015_session_alltime_output_tokens")]

    operations = [migrations.RunPython(create, drop)]
