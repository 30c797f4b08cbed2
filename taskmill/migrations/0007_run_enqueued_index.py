"""The control room's time-range filter over millions of runs: an index on enqueued_at."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("taskmill", "0006_control_room"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["enqueued_at"], name="taskmill_run_enqueued"),
        ),
    ]
