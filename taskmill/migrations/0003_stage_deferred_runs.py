"""Deferred runs leave the claim index: a `due` flag, the new claim index, the stage index."""

from django.db import migrations, models
from django.utils import timezone

import taskmill.models.indexes


def mark_deferred_runs(apps, schema_editor):
    # Runs waiting for a future time are not due yet; the worker stages them when it comes.
    Run = apps.get_model("taskmill", "Run")
    Run.objects.using(schema_editor.connection.alias).filter(
        status="READY", available_at__gt=timezone.now()
    ).update(due=False)


class Migration(migrations.Migration):
    dependencies = [
        ("taskmill", "0002_schedules"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="due",
            field=models.BooleanField(default=True, verbose_name="due"),
        ),
        migrations.RunPython(mark_deferred_runs, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="run", name="taskmill_run_claim"),
        migrations.AddIndex(
            model_name="run",
            index=taskmill.models.indexes.ClaimIndex(name="taskmill_run_claim"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=taskmill.models.indexes.StageIndex(name="taskmill_run_stage"),
        ),
    ]
