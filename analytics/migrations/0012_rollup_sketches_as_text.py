"""The rollups' sketches as JSON text rather than jsonb: PostgreSQL parsed every sketch the log
writer sent into jsonb (~15x the cost of storing text) and rendered every one a page read back
(~3x); only analytics.rollups reads them. Rewrites the rollup table once."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0011_rollup_weeks'),
    ]

    operations = [
        migrations.AlterField(
            model_name='rollup',
            name='latency',
            field=models.TextField(blank=True, default='{}', help_text='analytics.sketch of latency_ms, as JSON'),
        ),
        migrations.AlterField(
            model_name='rollup',
            name='ttft',
            field=models.TextField(blank=True, default='{}', help_text='analytics.sketch of ttft_ms, as JSON'),
        ),
    ]
