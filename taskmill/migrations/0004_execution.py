"""Execution you can trust: statuses WAITING/CANCELLED, leases marks, unique keys,
dependencies, result expiry, workers and paused queues."""


import django.db.models.deletion
import taskmill.models.indexes
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('taskmill', '0003_stage_deferred_runs'),
    ]

    operations = [
        migrations.CreateModel(
            name='Queue',
            fields=[
                ('name', models.CharField(max_length=64, primary_key=True, serialize=False, verbose_name='name')),
                ('paused', models.BooleanField(default=False, verbose_name='paused')),
                ('paused_at', models.DateTimeField(blank=True, null=True, verbose_name='paused at')),
            ],
            options={
                'verbose_name': 'queue',
                'verbose_name_plural': 'queues',
                'db_table': 'taskmill_queue',
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='RunDependency',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
            ],
            options={
                'db_table': 'taskmill_run_dependency',
            },
        ),
        migrations.CreateModel(
            name='Worker',
            fields=[
                ('id', models.CharField(max_length=128, primary_key=True, serialize=False, verbose_name='worker id')),
                ('host', models.CharField(max_length=255, verbose_name='host')),
                ('pid', models.PositiveIntegerField(verbose_name='process id')),
                ('label', models.CharField(blank=True, default='', max_length=100, verbose_name='label')),
                ('database', models.CharField(default='default', max_length=64, verbose_name='database alias')),
                ('queues', models.JSONField(blank=True, help_text='None: all.', null=True, verbose_name='queues')),
                ('exclude_queues', models.JSONField(blank=True, default=list, verbose_name='excluded queues')),
                ('concurrency', models.PositiveIntegerField(default=1, verbose_name='concurrency')),
                ('started_at', models.DateTimeField(verbose_name='started at')),
                ('last_heartbeat_at', models.DateTimeField(db_index=True, verbose_name='last heartbeat')),
                ('state', models.CharField(choices=[('running', 'running'), ('stopping', 'stopping'), ('stopped', 'stopped')], max_length=10, verbose_name='state')),
                ('running', models.JSONField(blank=True, default=list, verbose_name='running now')),
                ('processed', models.PositiveBigIntegerField(default=0, verbose_name='tasks processed')),
                ('shutdown_requested', models.BooleanField(default=False, verbose_name='shutdown requested')),
            ],
            options={
                'verbose_name': 'worker',
                'verbose_name_plural': 'workers',
                'db_table': 'taskmill_worker',
                'ordering': ['-started_at'],
            },
        ),
        migrations.AddField(
            model_name='run',
            name='unique_key',
            field=models.CharField(blank=True, max_length=200, null=True, verbose_name='unique key'),
        ),
        migrations.AddField(
            model_name='run',
            name='expires_at',
            field=models.DateTimeField(blank=True, db_index=True, null=True, verbose_name='expires at'),
        ),
        migrations.AddField(
            model_name='run',
            name='has_dependents',
            field=models.BooleanField(db_default=False, default=False, verbose_name='has dependents'),
        ),
        migrations.AddField(
            model_name='run',
            name='options',
            field=models.JSONField(blank=True, null=True, verbose_name='per-call options'),
        ),
        migrations.AddField(
            model_name='run',
            name='prefetched',
            field=models.BooleanField(db_default=False, default=False, verbose_name='claimed, not started'),
        ),
        migrations.AddField(
            model_name='run',
            name='stop_requested',
            field=models.BooleanField(db_default=False, default=False, verbose_name='stop requested'),
        ),
        migrations.AlterField(
            model_name='run',
            name='status',
            field=models.CharField(choices=[('READY', 'Ready'), ('WAITING', 'Waiting'), ('RUNNING', 'Running'), ('SUCCESSFUL', 'Successful'), ('FAILED', 'Failed'), ('CANCELLED', 'Cancelled')], default='READY', max_length=10, verbose_name='status'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=taskmill.models.indexes.RunningIndex(name='taskmill_run_running'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=taskmill.models.indexes.WaitingIndex(name='taskmill_run_waiting'),
        ),
        migrations.AddField(
            model_name='rundependency',
            name='depends_on',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='dependent_links', to='taskmill.run'),
        ),
        migrations.AddField(
            model_name='rundependency',
            name='run',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='dependency_links', to='taskmill.run'),
        ),
        migrations.AddField(
            model_name='run',
            name='active_unique_key',
            field=models.GeneratedField(db_persist=True, expression=models.Case(models.When(status__in=('READY', 'WAITING', 'RUNNING'), then=models.F('unique_key')), default=models.Value(None), output_field=models.CharField(max_length=200, null=True)), output_field=models.CharField(max_length=200, null=True)),
        ),
        migrations.AddConstraint(
            model_name='run',
            constraint=models.UniqueConstraint(fields=('task_path', 'active_unique_key'), name='taskmill_run_unique_active'),
        ),
        migrations.AddIndex(
            model_name='rundependency',
            index=models.Index(fields=['depends_on'], name='taskmill_dependency_on'),
        ),
        migrations.AddConstraint(
            model_name='rundependency',
            constraint=models.UniqueConstraint(fields=('run', 'depends_on'), name='taskmill_dependency_unique'),
        ),
    ]
