"""Indexes of what is set only: expires_at and the two unique rules, partial where possible.

A claim and a finish change a run's status, so PostgreSQL writes a new entry in every index
of the row. These three hold NULL for most runs in flight; made partial (``WHERE ... IS NOT
NULL``, PostgreSQL and SQLite) they are no longer written by claims and most finishes.
MariaDB has no partial indexes and keeps plain ones. Measured: docs/performance.md.

The unique constraints get new names and are added before the old ones go: on MariaDB the
old (schedule, scheduled_for) index serves the schedule foreign key until the new one does.
"""

from django.db import migrations, models

import taskmill.models.indexes


class Migration(migrations.Migration):
    dependencies = [
        ("taskmill", "0008_schedule_due_index"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="run",
            constraint=taskmill.models.indexes.NotNullUniqueConstraint(
                fields=["schedule", "scheduled_for"],
                nullable="schedule",
                name="taskmill_run_fire_once",
            ),
        ),
        migrations.AddConstraint(
            model_name="run",
            constraint=taskmill.models.indexes.NotNullUniqueConstraint(
                fields=["task_path", "active_unique_key"],
                nullable="active_unique_key",
                name="taskmill_run_active_once",
            ),
        ),
        migrations.RemoveConstraint(model_name="run", name="taskmill_run_unique_fire"),
        migrations.RemoveConstraint(model_name="run", name="taskmill_run_unique_active"),
        migrations.AlterField(
            model_name="run",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="expires at"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=taskmill.models.indexes.NotNullIndex(
                fields=["expires_at"], name="taskmill_run_expires"
            ),
        ),
    ]
