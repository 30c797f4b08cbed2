"""export-schedules / import-schedules: the document, the round trip, dry runs and stdin."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from taskmill.models import Schedule

from .conftest import TASK, make_schedule
from .transfer import OTHER_TASK, Edge, document, entry, export, import_document, snapshot

pytestmark = pytest.mark.django_db


# -- export -----------------------------------------------------------------------------------


def test_export_writes_every_editable_field_and_no_fire_state():
    now = timezone.now()
    upstream = make_schedule(now, name="upstream", kind="interval", interval=timedelta(hours=1))
    report = make_schedule(
        now,
        name="report",
        kind="cron",
        cron="0 30 8 * * MON",
        timezone="Europe/Paris",
        args=["weekly"],
        kwargs={"lang": "fr"},
        queue_name="high",
        priority=5,
        start_at=datetime(2027, 1, 1, 9, tzinfo=UTC),
        end_at=datetime(2028, 1, 1, tzinfo=UTC),
        max_fires=10,
        max_instances=2,
        misfire_grace=timedelta(seconds=90.5),
        misfire_policy="catch_up",
        fire_time_kwarg="fired_at",
    )
    report.depends_on.add(upstream)
    Schedule.objects.filter(pk=report.pk).update(fire_count=3, skip_count=4, last_fire_at=now)

    data = export()
    assert (data["format"], data["version"]) == ("taskmill-schedules", 1)
    assert [item["name"] for item in data["schedules"]] == ["report", "upstream"]
    assert data["schedules"][0] == {
        "name": "report",
        "task_path": TASK,
        "kind": "cron",
        "cron": "0 30 8 * * MON",
        "interval": None,
        "run_at": None,
        "timezone": "Europe/Paris",
        "start_at": "2027-01-01T09:00:00+00:00",
        "end_at": "2028-01-01T00:00:00+00:00",
        "max_fires": 10,
        "max_instances": 2,
        "enabled": True,
        "run_on_creation": False,
        "args": ["weekly"],
        "kwargs": {"lang": "fr"},
        "queue_name": "high",
        "priority": 5,
        "backend": "",
        "misfire_grace": 90.5,
        "misfire_policy": "catch_up",
        "fire_time_kwarg": "fired_at",
        "depends_on": ["upstream"],
        "code_owned": False,
    }
    assert data["schedules"][1]["interval"] == 3600  # whole seconds: an integer


def test_export_selects_by_name_excludes_code_owned_and_writes_a_file(tmp_path):
    now = timezone.now()
    for name in ("a", "b"):
        make_schedule(now, name=name, kind="interval", interval=timedelta(minutes=1))
    make_schedule(now, name="declared", kind="cron", cron="* * * * *", code_owned=True)

    assert [s["name"] for s in export("--name", "b", "--name", "a")["schedules"]] == ["a", "b"]
    everything = export()["schedules"]
    assert [(s["name"], s["code_owned"]) for s in everything] == [
        ("a", False),
        ("b", False),
        ("declared", True),
    ]
    assert [s["name"] for s in export("--exclude-code-owned")["schedules"]] == ["a", "b"]
    with pytest.raises(CommandError, match="No schedule named 'nope'"):
        export("--name", "a", "--name", "nope")

    target = tmp_path / "out.json"
    err = io.StringIO()
    call_command("taskmill", "export-schedules", "--output", str(target), stderr=err)
    assert json.loads(target.read_text())["schedules"] == everything
    assert "3 schedules written" in err.getvalue()


# -- import -----------------------------------------------------------------------------------


def test_round_trip_into_an_empty_database_reproduces_the_schedules(tmp_path):
    now = timezone.now()
    feeds = make_schedule(
        now,
        name="import feeds",
        kind="interval",
        interval=timedelta(minutes=5),
        start_at=datetime(2026, 1, 1, tzinfo=UTC),
        misfire_policy="skip",
    )
    publish = make_schedule(
        now,
        name="publish",
        task_path=OTHER_TASK,
        kind="cron",
        cron="0 7 * * *",
        timezone="America/New_York",
        kwargs={"label": "x"},
        fire_time_kwarg="fired_at",
        priority=-3,
        queue_name="low",
    )
    publish.depends_on.add(feeds)
    make_schedule(
        now, name="new year", kind="once", run_at=datetime(2030, 1, 1, tzinfo=UTC), enabled=False
    )
    make_schedule(
        now,
        name="seconds",
        kind="cron",
        cron="*/10 * * * * *",
        max_fires=5,
        max_instances=3,
        misfire_grace=timedelta(microseconds=1500),
        args=[1, "two", None, {"three": [3]}],
    )
    before = export()
    Schedule.objects.all().delete()

    output = import_document(tmp_path, before)
    assert "Schedules imported: 4 created, 0 updated, 0 unchanged, 0 skipped" in output
    assert export() == before
    for schedule in Schedule.objects.all():
        # Next fire times computed as for any new schedule (by the model's save()).
        expected = schedule.compute_next_fire(timezone.now())
        if expected is None:
            assert schedule.next_fire_at is None
        else:
            assert abs(schedule.next_fire_at - expected) < timedelta(seconds=11)
    assert Schedule.objects.get(name="new year").next_fire_at is None  # disabled
    assert Schedule.objects.get(name="publish").fire_count == 0


def test_import_updates_changed_schedules_and_leaves_unchanged_ones_alone(tmp_path):
    now = timezone.now()
    make_schedule(now, name="same", kind="cron", cron="0 8 * * *")
    moved = make_schedule(now, name="moved", kind="cron", cron="0 8 * * *")
    Schedule.objects.filter(name="moved").update(fire_count=7, last_fire_at=now)
    data = export()
    stamps = dict(Schedule.objects.values_list("name", "updated_at"))
    data["schedules"][0]["cron"] = "0 0 1 1 *"  # "moved" sorts first
    data["schedules"].append(entry("fresh"))

    output = import_document(tmp_path, data)
    assert "created: fresh" in output and "updated: moved" in output
    assert "1 created, 1 updated, 1 unchanged" in output
    moved = Schedule.objects.get(name="moved")
    assert moved.cron == "0 0 1 1 *"
    assert moved.next_fire_at == moved.compute_next_fire(timezone.now())  # recomputed
    assert moved.fire_count == 7  # the scheduler's state stays
    assert Schedule.objects.get(name="same").updated_at == stamps["same"]  # not even saved


def test_omitted_fields_take_the_models_defaults_on_create_and_on_update(tmp_path):
    make_schedule(timezone.now(), name="a", kind="cron", cron="0 8 * * *", priority=9, args=["old"])
    import_document(
        tmp_path, document({"name": "a", "task_path": TASK, "kind": "cron", "cron": "5 8 * * *"})
    )
    schedule = Schedule.objects.get(name="a")
    assert (schedule.priority, schedule.args, schedule.misfire_grace) == (
        None,
        [],
        timedelta(seconds=60),
    )
    assert schedule.timezone == "UTC"  # settings.TIME_ZONE, the model's default


def test_code_owned_entries_are_skipped_and_dependencies_can_be_rewired(tmp_path):
    now = timezone.now()
    a = make_schedule(now, name="a", kind="cron", cron="0 8 * * *")
    b = make_schedule(now, name="b", kind="cron", cron="0 9 * * *")
    a.depends_on.add(b)
    declared = make_schedule(now, name="declared", kind="cron", cron="* * * * *", code_owned=True)
    # Reversed edge: valid only once a's old dependency is gone, in the same import.
    data = document(
        entry("a", depends_on=[]),
        entry("b", cron="0 9 * * *", depends_on=["a", "declared"]),
        entry("declared", cron="0 0 * * *", code_owned=True),
    )
    output = import_document(tmp_path, data)
    assert "skipped (declared in code): declared" in output
    assert sorted(Edge.objects.values_list("from_schedule__name", "to_schedule__name")) == [
        ("b", "a"),
        ("b", "declared"),
    ]
    declared.refresh_from_db()
    assert declared.cron == "* * * * *"  # the code's, not the file's


def test_dry_run_reports_and_writes_nothing(tmp_path, existing):
    before = snapshot()
    data = document(entry("new"), entry("existing", kind="interval", interval=60))
    output = import_document(tmp_path, data, "--dry-run")
    assert "would be created: new" in output
    assert "would be updated: existing" in output
    assert "Dry run, nothing written: 1 created, 1 updated" in output
    assert snapshot() == before


def test_import_reads_standard_input(tmp_path, monkeypatch):
    text = json.dumps(document(entry("from-stdin")))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    call_command("taskmill", "import-schedules", "-", stdout=io.StringIO())
    assert Schedule.objects.get(name="from-stdin").next_fire_at is not None
