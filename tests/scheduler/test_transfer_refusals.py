"""import-schedules refuses a bad document whole, naming every problem, and writes nothing;
entries declared in code are read and checked too."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from taskmill.models import Schedule
from tests.conftest import only_on

from .conftest import make_schedule
from .transfer import document, entry, import_document, import_in_a_process, snapshot, write

pytestmark = [
    pytest.mark.django_db,
    only_on("mysql", "a document is refused before anything is written, whatever the database"),
]


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
    "max_instances a string": (
        _set(0, max_instances="1"),
        f"{NIGHTLY}, field 'max_instances': must be an integer or null",
    ),
    "max_instances zero": (
        _set(0, max_instances=0),
        f"{NIGHTLY}, field 'max_instances': The maximum number of instances must be at least 1",
    ),
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
    result = import_in_a_process(path, subprocess_env)
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
    result = import_in_a_process(path, subprocess_env)
    assert result.returncode == 1, result.stdout
    assert (
        "Schedule 'declared' (schedules[1]) (declared in code, not imported), field 'cron': "
        "Invalid cron expression '61 * * * *'"
    ) in result.stderr
    assert result.stdout == ""
    assert not Schedule.objects.exists()
