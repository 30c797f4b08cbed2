"""Indexes for the control room's runs list over millions of runs.

- ``enqueued_at``: the time-range filter and its capped count.
- ``(task_path, queue_name, id)``: the task filter, alone or with a queue, in the list's id
  order. It replaces the plain index on ``task_path`` (two on PostgreSQL, which adds a
  ``varchar_pattern_ops`` copy for LIKE that no query uses): one index fewer for every
  enqueue to write. Lookups by task alone also have the unique constraint on
  ``(task_path, active_unique_key)``.

The old index is dropped by introspection, not by AlterField: on SQLite AlterField would copy
the whole runs table to change an index.
"""

from django.db import migrations, models


def _drop_task_path_index(apps, schema_editor):
    model = apps.get_model("taskmill", "Run")
    table = model._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    for name, constraint in constraints.items():
        if (
            constraint["index"]
            and not constraint["unique"]
            and not constraint["primary_key"]
            and constraint["columns"] == ["task_path"]
        ):
            schema_editor.execute(schema_editor._delete_index_sql(model, name))


def _create_task_path_index(apps, schema_editor):
    model = apps.get_model("taskmill", "Run")
    schema_editor.add_index(
        model, models.Index(fields=["task_path"], name="taskmill_run_task_path")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("taskmill", "0006_control_room"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["enqueued_at"], name="taskmill_run_enqueued"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="run",
                    name="task_path",
                    field=models.CharField(max_length=255, verbose_name="task"),
                ),
            ],
            database_operations=[
                migrations.RunPython(_drop_task_path_index, _create_task_path_index),
            ],
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                fields=["task_path", "queue_name", "id"], name="taskmill_run_task_queue"
            ),
        ),
    ]
