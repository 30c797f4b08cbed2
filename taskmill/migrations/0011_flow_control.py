"""Flow control (taskmill.limits): a run's limit keys and what holds it back, the keys'
rows and the starts a rate counts, queue limits; the stager's index leaves held-back runs
out (they wait for a slot, not a time), and new indexes find a key's held and due runs.

New booleans have database defaults too, so that a process of the previous release still
running during a deploy can insert rows without knowing the columns.
"""

import taskmill.models.indexes
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("taskmill", "0010_schedule_max_instances"),
    ]

    operations = [
        migrations.CreateModel(
            name="Limit",
            fields=[
                (
                    "key",
                    models.CharField(
                        max_length=255, primary_key=True, serialize=False, verbose_name="key"
                    ),
                ),
                (
                    "concurrency_limit",
                    models.PositiveIntegerField(
                        blank=True, null=True, verbose_name="concurrency limit"
                    ),
                ),
                (
                    "rate_count",
                    models.PositiveIntegerField(
                        blank=True, null=True, verbose_name="starts per window"
                    ),
                ),
                (
                    "rate_seconds",
                    models.FloatField(blank=True, null=True, verbose_name="window (seconds)"),
                ),
                (
                    "release_at",
                    models.DateTimeField(
                        blank=True, db_index=True, null=True, verbose_name="look again at"
                    ),
                ),
            ],
            options={
                "verbose_name": "limit key",
                "verbose_name_plural": "limit keys",
                "db_table": "taskmill_limit",
                "ordering": ["key"],
            },
        ),
        migrations.CreateModel(
            name="LimitStart",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("key", models.CharField(max_length=255, verbose_name="key")),
                ("started_at", models.DateTimeField(verbose_name="started at")),
                ("run_id", models.BigIntegerField(blank=True, null=True, verbose_name="run")),
                ("begun", models.BooleanField(db_default=True, default=True, verbose_name="begun")),
            ],
            options={
                "verbose_name": "rate-limited start",
                "verbose_name_plural": "rate-limited starts",
                "db_table": "taskmill_limit_start",
            },
        ),
        migrations.AlterModelOptions(
            name="queue",
            options={
                "ordering": ["name"],
                "permissions": [
                    ("pause_queue", "Can pause and resume queues"),
                    ("change_queue_limits", "Can change queues' limits"),
                ],
                "verbose_name": "queue",
                "verbose_name_plural": "queues",
            },
        ),
        migrations.RemoveIndex(
            model_name="run",
            name="taskmill_run_stage",
        ),
        migrations.AddField(
            model_name="queue",
            name="at_limit",
            field=models.BooleanField(db_default=False, default=False, verbose_name="at its limit"),
        ),
        migrations.AddField(
            model_name="queue",
            name="concurrency_limit",
            field=models.PositiveIntegerField(
                blank=True, null=True, verbose_name="concurrency limit"
            ),
        ),
        migrations.AddField(
            model_name="queue",
            name="limits_set_at",
            field=models.DateTimeField(
                blank=True, null=True, verbose_name="limits set at run time"
            ),
        ),
        migrations.AddField(
            model_name="queue",
            name="rate_limit",
            field=models.CharField(blank=True, max_length=32, null=True, verbose_name="rate limit"),
        ),
        migrations.AddField(
            model_name="queue",
            name="release_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="look again at"),
        ),
        migrations.AddField(
            model_name="run",
            name="concurrency_key",
            field=models.CharField(
                blank=True, max_length=255, null=True, verbose_name="concurrency key"
            ),
        ),
        migrations.AddField(
            model_name="run",
            name="fair_key",
            field=models.CharField(blank=True, max_length=255, null=True, verbose_name="fair key"),
        ),
        migrations.AddField(
            model_name="run",
            name="held_by",
            field=models.CharField(
                blank=True, max_length=255, null=True, verbose_name="held back by"
            ),
        ),
        migrations.AddField(
            model_name="run",
            name="rate_key",
            field=models.CharField(blank=True, max_length=255, null=True, verbose_name="rate key"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=taskmill.models.indexes.StagingIndex(name="taskmill_run_staging"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=taskmill.models.indexes.HeldIndex(name="taskmill_run_held"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=taskmill.models.indexes.KeyedReadyIndex(
                fields=["concurrency_key"], name="taskmill_run_ready_ckey"
            ),
        ),
        migrations.AddIndex(
            model_name="run",
            index=taskmill.models.indexes.KeyedReadyIndex(
                fields=["rate_key"], name="taskmill_run_ready_rkey"
            ),
        ),
        migrations.AddIndex(
            model_name="run",
            index=taskmill.models.indexes.KeyedReadyIndex(
                fields=["fair_key"], name="taskmill_run_ready_fkey"
            ),
        ),
        migrations.AddIndex(
            model_name="limitstart",
            index=models.Index(fields=["key", "started_at"], name="taskmill_limit_start_key"),
        ),
    ]
