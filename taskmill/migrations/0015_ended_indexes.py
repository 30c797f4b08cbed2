"""Runs that ended FAILED or CANCELLED, by id: partial indexes on PostgreSQL and SQLite.

The control room's runs list filtered to failed runs (``WHERE status = 'FAILED' ORDER BY id
DESC``) walked the primary key down through every newer run, a million READY ones in an
outage (1.7 s at load 30, issue 25). A run enters these only when it fails for good or is
cancelled: enqueues, claims and successes write nothing more. MySQL/MariaDB get nothing
(taskmill.models.indexes.EndedIndex): there the (status, id) waiting index serves the filter.
Measured: docs/performance.md, "The control room in an outage".
"""

from django.db import migrations

import taskmill.models.indexes


class Migration(migrations.Migration):
    dependencies = [
        ("taskmill", "0014_run_storage"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="run",
            index=taskmill.models.indexes.EndedIndex(status="FAILED", name="taskmill_run_failed"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=taskmill.models.indexes.EndedIndex(
                status="CANCELLED", name="taskmill_run_cancelled"
            ),
        ),
    ]
