"""The runs table's storage parameters on PostgreSQL, from the retention benchmark (issue 25;
docs/performance.md, "Retention at volume"; ``python -m bench.retention``).

A queue's table turns over whole every time-to-live: each run is inserted, updated twice
(claimed, finished) and deleted by the pruner, three dead row versions a run. With
PostgreSQL's defaults autovacuum waits until dead rows are 20% of the table (2 million of a
table of 10 million kept runs), and every claim and finish walks past them in the indexes
meanwhile. Here it comes at 2% plus 1,000 rows (measured: 6x fewer dead rows, a table 10%
smaller, both flat), with ten times the default cost limit, so that one vacuum of a
table of millions ends in seconds rather than minutes.

The fillfactor stays 100: no update of a run can be HOT (0.1% were, measured), since the
claim and the finish change ``status``, a column in the conditions of the partial indexes,
and the finish sets ``finished_at`` and ``expires_at``, both indexed.

ALTER TABLE ... SET of these parameters takes a SHARE UPDATE EXCLUSIVE lock: reads and
writes go on while it runs, and the table is not rewritten. Other databases have no such
parameters (MySQL/MariaDB's InnoDB purges on its own, SQLite has no vacuum daemon): nothing
is done there.
"""

from django.db import migrations

# Read by bench.retention (--storage reset) too.
PARAMETERS = {
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_cost_limit": "2000",
}


def _table(apps, schema_editor):
    table = apps.get_model("taskmill", "Run")._meta.db_table
    return schema_editor.quote_name(table)


def set_parameters(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    pairs = ", ".join(f"{name} = {value}" for name, value in PARAMETERS.items())
    schema_editor.execute(f"ALTER TABLE {_table(apps, schema_editor)} SET ({pairs})")


def reset_parameters(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    names = ", ".join(PARAMETERS)
    schema_editor.execute(f"ALTER TABLE {_table(apps, schema_editor)} RESET ({names})")


class Migration(migrations.Migration):
    dependencies = [
        ("taskmill", "0013_run_stats_total"),
    ]

    operations = [
        migrations.RunPython(set_parameters, reset_parameters, elidable=False),
    ]
