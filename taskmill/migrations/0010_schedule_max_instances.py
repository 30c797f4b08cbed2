"""A schedule's max_instances (a fire while that many of its runs are pending or running is
skipped) and skip_count (the fire times that enqueued nothing).

skip_count has a database default too, so that a process of the previous release still
running during a deploy can insert schedules without knowing the column.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("taskmill", "0009_not_null_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="schedule",
            name="max_instances",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="At most this many runs of the schedule pending or running at once; a fire that would make one more is skipped. Blank: no limit.",
                null=True,
                verbose_name="maximum instances",
            ),
        ),
        migrations.AddField(
            model_name="schedule",
            name="skip_count",
            field=models.PositiveIntegerField(
                db_default=0, default=0, verbose_name="skipped fires"
            ),
        ),
    ]
