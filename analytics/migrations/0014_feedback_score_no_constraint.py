"""Feedback and scores keep their request's id without a database constraint: with ClickHouse as the
only log store (CLICKHOUSE_ONLY), SQL holds no request log for them to reference."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0013_saved_views"),
    ]

    operations = [
        migrations.AlterField(
            model_name="feedback",
            name="request",
            field=models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.CASCADE,
                                       related_name="feedback", to="analytics.requestlog"),
        ),
        migrations.AlterField(
            model_name="score",
            name="request",
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="scores", to="analytics.requestlog"),
        ),
    ]
