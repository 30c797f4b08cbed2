"""export-schedules / import-schedules: the document, the round trip, and every refusal."""

from __future__ import annotations

import copy
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from taskmill.models import Schedule
from tests.conftest import ROOT

from .conftest import TASK, make_schedule

pytestmark = pytest.mark.django_db

OTHER_TASK = "tests.testapp.scheduled_tasks.record_fire"
Edge = Schedule.depends_on.through


def export(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("taskmill", "export-schedules", *args, stdout=out)
    return json.loads(out.getvalue())


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "schedules.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def import_document(tmp_path: Path, document: Any, *args: str) -> str:
    out = io.StringIO()
    call_command("taskmill", "import-schedules", str(write(tmp_path, document)), *args, stdout=out)
    return out.getvalue()


def snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    """Everything an import could write: every column of every schedule, and the edges."""
    names = [field.attname for field in Schedule._meta.concrete_fields]
    rows = list(Schedule.objects.order_by("name").values_list(*names))
    edges = sorted(Edge.objects.values_list("from_schedule__name", "to_schedule__name"))
    return rows, edges


def entry(name: str, **values: Any) -> dict[str, Any]:
    return {"name": name, "task_path": TASK, "kind": "cron", "cron": "0 8 * * *", **values}


def document(*schedules: dict[str, Any]) -> dict[str, Any]:
    return {"format": "taskmill-schedules", "version": 1, "schedules": list(schedules)}


@pytest.fixture
def existing() -> Schedule:
    """A stored schedule that the bad documents below would also update."""
    return make_schedule(
        timezone.now(), name="existing", kind="interval", interval=timedelta(minutes=5)
    )


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
        misfire_grace=timedelta(seconds=90.5),
        misfire_policy="catch_up",
        fire_time_kwarg="fired_at",
    )
    report.depends_on.add(upstream)
    Schedule.objects.filter(pk=report.pk).update(fire_count=3, last_fire_at=now)

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
        "enabled": True,
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


# -- every refusal: the message names the schedule and field, and nothing is written -----------


def _valid() -> dict[str, Any]:
    # A new schedule, a dependent and an update of "existing": a partial import would show.
    return document(
        entry("nightly", cron="0 2 * * *"),
        entry("after", kind="interval", interval=300, depends_on=["nightly"]),
        entry("existing", kind="interval", interval=60, args=["changed"]),
    )


def _set(position: int, **values: Any) -> Callable[[dict[str, Any]], Any]:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        data["schedules"][position].update(values)
        return data

    return change


def _drop(position: int, key: str) -> Callable[[dict[str, Any]], Any]:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        del data["schedules"][position][key]
        return data

    return change


def _top(**values: Any) -> Callable[[dict[str, Any]], Any]:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        data.update(values)
        return {key: value for key, value in data.items() if value is not ...}

    return change


NIGHTLY = "Schedule 'nightly' (schedules[0])"
BAD_DOCUMENTS = {
    "not JSON": (lambda data: '{"format": "taskmill-schedules",', "The file is not valid JSON"),
    "not an object": (lambda data: [data], "The document must be a JSON object"),
    "wrong format": (_top(format="other-tool"), "format is 'other-tool', not"),
    "wrong version": (_top(version=2), "version is 2; this taskmill reads version 1"),
    "no schedules list": (_top(schedules=...), "needs a 'schedules' list"),
    "unknown top-level key": (_top(exported_by="me"), "Unknown top-level key 'exported_by'"),
    "duplicate key": (
        lambda data: json.dumps(data).replace('"version": 1', '"version": 1, "version": 1'),
        "the key 'version' appears twice",
    ),
    "NaN": (_set(1, interval=float("nan")), "NaN is not a JSON number"),
    "entry not an object": (_top(schedules=["nightly"]), "schedules[0] must be a JSON object"),
    "missing kind": (_drop(0, "kind"), f"{NIGHTLY}: the field 'kind' is missing"),
    "missing name": (_drop(0, "name"), "schedules[0]: the field 'name' is missing"),
    "unknown field": (_set(0, colour="red"), f"{NIGHTLY}: unknown field 'colour'"),
    "args not a list": (_set(0, args="x"), f"{NIGHTLY}, field 'args': must be a JSON list"),
    "kwargs not an object": (_set(0, kwargs=[]), "field 'kwargs': must be a JSON object"),
    "priority a string": (_set(0, priority="high"), "field 'priority': must be an integer"),
    "priority a boolean": (_set(0, priority=True), "field 'priority': must be an integer"),
    "enabled a string": (_set(0, enabled="yes"), "field 'enabled': must be true or false"),
    "interval a string": (_set(1, interval="5m"), "field 'interval': must be a number of"),
    "name a number": (_set(0, name=7), "schedules[0], field 'name': must be a string"),
    "depends_on a string": (_set(1, depends_on="nightly"), "must be a list of schedule names"),
    "code_owned a string": (_set(0, code_owned="no"), "field 'code_owned': must be true"),
    "naive datetime": (
        _set(0, start_at="2027-01-01T08:00:00"),
        f"{NIGHTLY}, field 'start_at': '2027-01-01T08:00:00' needs a UTC offset",
    ),
    "not a datetime": (_set(0, end_at="tomorrow"), "'tomorrow' is not an ISO 8601 date"),
    "duplicate names": (_set(1, name="nightly"), "the name is already used by schedules[0]"),
    "invalid cron": (
        _set(0, cron="61 * * * *"),
        f"{NIGHTLY}, field 'cron': Invalid cron expression '61 * * * *': Bad minute",
    ),
    "unknown time zone": (
        _set(0, timezone="Mars/Olympus"),
        f"{NIGHTLY}, field 'timezone': Unknown time zone 'Mars/Olympus'",
    ),
    "unregistered task": (
        _set(0, task_path="tests.testapp.scheduled_tasks.nope"),
        f"{NIGHTLY}, field 'task_path': Task 'tests.testapp.scheduled_tasks.nope' is not",
    ),
    "unknown kind": (_set(0, kind="weekly"), f"{NIGHTLY}, field 'kind': Value 'weekly'"),
    "unknown queue": (_set(0, queue_name="nowhere"), f"{NIGHTLY}, field 'queue_name':"),
    "negative interval": (_set(1, interval=-5), "field 'interval': The interval must be positive"),
    "unknown dependency": (
        _set(1, depends_on=["nightly", "ghost"]),
        "Schedule 'after' (schedules[1]), field 'depends_on': 'ghost' is not a schedule in "
        "the file or the database",
    ),
    "cycle in the file": (
        _set(0, depends_on=["after"]),
        "must not form a cycle: nightly -> after -> nightly",
    ),
    "self dependency": (_set(0, depends_on=["nightly"]), "cycle: nightly -> nightly"),
}


@pytest.mark.parametrize("case", BAD_DOCUMENTS, ids=list(BAD_DOCUMENTS))
def test_a_bad_document_is_refused_naming_the_problem_and_writes_nothing(tmp_path, existing, case):
    change, message = BAD_DOCUMENTS[case]
    bad = change(copy.deepcopy(_valid()))
    import_document(tmp_path, _valid(), "--dry-run")  # the valid one would be imported
    before = snapshot()
    with pytest.raises(CommandError) as caught:
        import_document(tmp_path, bad)
    assert message in str(caught.value)
    assert "nothing was written" in str(caught.value)
    assert snapshot() == before


def test_every_problem_is_reported_at_once(tmp_path, existing):
    bad = _valid()
    bad["schedules"][0]["cron"] = "61 * * * *"
    bad["schedules"][1]["timezone"] = "Nowhere"
    with pytest.raises(CommandError) as caught:
        import_document(tmp_path, bad)
    assert "field 'cron'" in str(caught.value) and "field 'timezone'" in str(caught.value)


def test_a_cycle_across_imported_and_stored_schedules_is_refused(tmp_path, existing):
    now = timezone.now()
    x = make_schedule(now, name="x", kind="cron", cron="0 1 * * *")
    y = make_schedule(now, name="y", kind="cron", cron="0 2 * * *")
    x.depends_on.add(y)  # stored: x -> y -> existing
    y.depends_on.add(existing)
    before = snapshot()
    data = document(entry("new"), entry("existing", depends_on=["new", "x"]))
    with pytest.raises(CommandError) as caught:
        import_document(tmp_path, data)
    assert (
        "Schedule 'existing' (schedules[1]), field 'depends_on': schedule dependencies must "
        "not form a cycle: existing -> x -> y -> existing"
    ) in str(caught.value)
    assert snapshot() == before


def test_a_code_owned_schedule_is_not_overwritten(tmp_path, existing):
    make_schedule(timezone.now(), name="declared", kind="cron", cron="* * * * *", code_owned=True)
    before = snapshot()
    with pytest.raises(CommandError) as caught:
        import_document(tmp_path, document(entry("new"), entry("declared")))
    assert (
        "Schedule 'declared' (schedules[1]): a schedule of this name is declared in code here"
    ) in str(caught.value)
    assert snapshot() == before


def test_no_update_refuses_existing_names(tmp_path, existing):
    before = snapshot()
    with pytest.raises(CommandError) as caught:
        import_document(tmp_path, document(entry("new"), entry("existing")), "--no-update")
    assert "Schedule 'existing' (schedules[1]): a schedule of this name exists (--no-update)" in (
        str(caught.value)
    )
    assert snapshot() == before


def test_a_dependency_on_a_code_owned_entry_not_synced_here_says_so(tmp_path):
    data = document(entry("declared", code_owned=True), entry("mine", depends_on=["declared"]))
    with pytest.raises(
        CommandError, match=re.escape("run 'manage.py taskmill sync-schedules' here first")
    ):
        import_document(tmp_path, data)
    assert not Schedule.objects.exists()


def test_an_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match=r"Cannot read .*missing\.json"):
        call_command("taskmill", "import-schedules", str(tmp_path / "missing.json"))


@pytest.mark.django_db(transaction=True)
def test_the_command_line_exits_non_zero_with_the_message(tmp_path, subprocess_env, existing):
    before = snapshot()
    path = write(tmp_path, document(entry("new"), entry("broken", cron="0 25 * * *")))
    result = subprocess.run(
        [sys.executable, "-m", "django", "taskmill", "import-schedules", str(path)],
        env=subprocess_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "CommandError: The file was not imported; nothing was written:" in result.stderr
    assert "Schedule 'broken' (schedules[1]), field 'cron': Invalid cron expression" in (
        result.stderr
    )
    assert result.stdout == ""
    assert snapshot() == before


# -- entries declared in code: never written, always checked ------------------------------------

BROKEN_DECLARED = {
    "invalid cron": ({"cron": "0 25 * * *"}, "field 'cron': Invalid cron expression"),
    "unregistered task": (
        {"task_path": "tests.testapp.scheduled_tasks.nope"},
        "field 'task_path': Task 'tests.testapp.scheduled_tasks.nope' is not",
    ),
    "unknown time zone": ({"timezone": "Mars/Olympus"}, "field 'timezone': Unknown time zone"),
}


@pytest.mark.parametrize("case", BROKEN_DECLARED, ids=list(BROKEN_DECLARED))
def test_a_broken_entry_declared_in_code_refuses_the_whole_file(tmp_path, existing, case):
    """An entry marked code_owned is skipped, not imported: it used to be skipped unread,
    so a broken export imported with exit status 0."""
    values, message = BROKEN_DECLARED[case]
    make_schedule(timezone.now(), name="declared", kind="cron", cron="* * * * *", code_owned=True)
    before = snapshot()
    data = document(entry("new"), entry("declared", code_owned=True, **values))
    with pytest.raises(CommandError) as caught:
        import_document(tmp_path, data)
    assert (
        f"Schedule 'declared' (schedules[1]) (declared in code, not imported), {message}"
    ) in str(caught.value)
    assert "nothing was written" in str(caught.value)
    assert snapshot() == before  # not even the valid entry


def test_a_valid_entry_declared_in_code_is_still_skipped(tmp_path):
    data = document(entry("new"), entry("not-synced-here", code_owned=True))
    output = import_document(tmp_path, data)
    assert "skipped (declared in code): not-synced-here" in output
    assert list(Schedule.objects.values_list("name", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)
def test_the_command_line_refuses_a_broken_declared_entry(tmp_path, subprocess_env):
    path = write(
        tmp_path,
        document(entry("new"), entry("declared", code_owned=True, cron="61 * * * *")),
    )
    result = subprocess.run(
        [sys.executable, "-m", "django", "taskmill", "import-schedules", str(path)],
        env=subprocess_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout
    assert (
        "Schedule 'declared' (schedules[1]) (declared in code, not imported), field 'cron': "
        "Invalid cron expression '61 * * * *'"
    ) in result.stderr
    assert result.stdout == ""
    assert not Schedule.objects.exists()
