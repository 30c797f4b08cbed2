"""``taskmill worker --log-format json``: what real worker processes write, one JSON object per
line, with each ended attempt's run, outcome and traceback as fields; ``TASKMILL_LOG_FORMAT``;
and ``taskmill.logs`` in a project's own logging set-up."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
from types import SimpleNamespace
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from taskmill.logs import DURATION, OUTCOME, WORKER, WorkerFilter, run_fields
from taskmill.models import Run
from tests.testapp import snooze_tasks, tasks

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
STARTED = re.compile(r"Worker (\S+) started: ")


def in_worker_processes(test: Any) -> Any:
    """Real worker processes on the test database (the formatter's own tests need neither)."""
    return pytest.mark.slow(pytest.mark.django_db(transaction=True)(test))


def json_lines(worker) -> list[dict[str, Any]]:
    """Every line the process wrote (stdout and stderr), each parsed: one that is not JSON
    fails the test."""
    entries = []
    for line in worker.lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\nall of it:\n{worker.output}")
    return entries


def ended_attempts(entries: list[dict[str, Any]]) -> dict[tuple[int, int], dict[str, Any]]:
    """The line about each attempt that ended, by (run id, attempt): exactly one each."""
    found: dict[tuple[int, int], dict[str, Any]] = {}
    for entry in entries:
        if "outcome" in entry:
            key = (entry["run_id"], entry["attempt"])
            assert key not in found, f"two lines about attempt {key}: {found[key]}, {entry}"
            found[key] = entry
    return found


@in_worker_processes
def test_every_line_is_json_with_the_fields_of_each_ended_attempt(run_worker):
    success = int(tasks.add.enqueue(1, 2).id)
    retried = int(tasks.flaky.enqueue(1).id)  # fails its first attempt, then succeeds
    final = int(tasks.fail.enqueue("kaboom").id)
    snoozed = int(snooze_tasks.planned.enqueue("SO").id)  # snoozes (due at once), then returns
    worker = run_worker("--burst", "--log-format", "json")
    entries = json_lines(worker)
    assert Run.objects.get(pk=final).status == "FAILED"
    assert {Run.objects.get(pk=pk).status for pk in (success, retried, snoozed)} == {"SUCCESSFUL"}

    worker_id = next(m[1] for e in entries if (m := STARTED.match(e["message"])))
    for entry in entries:
        assert TIME.fullmatch(entry["time"]), entry
        assert entry["level"] in {"DEBUG", "INFO", "WARNING", "ERROR"}, entry
        assert entry["logger"], entry  # taskmill's; on Django 5.2 django_tasks' too
        assert entry["worker"] == worker_id, entry  # on every line, not only the attempts'

    attempts = ended_attempts(entries)
    assert {key: (entry["outcome"], entry["level"]) for key, entry in attempts.items()} == {
        (success, 1): ("SUCCESSFUL", "INFO"),
        (retried, 1): ("READY", "WARNING"),
        (retried, 2): ("SUCCESSFUL", "INFO"),
        (final, 1): ("FAILED", "ERROR"),
        (snoozed, 1): ("SNOOZED", "INFO"),
        (snoozed, 2): ("SUCCESSFUL", "INFO"),
    }, worker.output
    for entry in attempts.values():
        assert entry["queue"] == "default", entry
        assert isinstance(entry["duration"], float) and 0 <= entry["duration"] < 60, entry
    assert attempts[(success, 1)]["task"] == "tests.testapp.tasks.add"
    assert attempts[(snoozed, 1)]["task"] == "tests.testapp.snooze_tasks.planned"
    assert re.fullmatch(
        rf"Run {success} \(tests\.testapp\.tasks\.add\) attempt 1 succeeded in \d+\.\d{{3}}s",
        attempts[(success, 1)]["message"],
    )
    assert re.fullmatch(
        rf"Run {snoozed} \(tests\.testapp\.snooze_tasks\.planned\) attempt 1 snoozed for 0s "
        r"after \d+\.\d{3}s",
        attempts[(snoozed, 1)]["message"],
    )

    # A failure's traceback: inside its one line, at the default verbosity too, not after it.
    failure = attempts[(final, 1)]
    assert failure["message"] == (
        f"Run {final} (tests.testapp.tasks.fail) attempt 1 failed for good (no retry): "
        "ValueError: kaboom"
    )
    assert failure["exception"].startswith("Traceback (most recent call last):"), failure
    assert "raise ValueError(message)" in failure["exception"]
    assert failure["exception"].endswith("ValueError: kaboom")
    assert attempts[(retried, 1)]["exception"].endswith("ConnectionError: attempt 1 failed")
    for key in [(success, 1), (retried, 2), (snoozed, 1), (snoozed, 2)]:
        assert "exception" not in attempts[key], attempts[key]


@in_worker_processes
def test_what_no_handler_takes_is_a_json_line_too(run_worker):
    # Python's last resort and warnings.warn() would write plain text (on Django 5.2, the
    # backport's own logger says every failed run so, with its traceback).
    warned = int(tasks.warn.enqueue("stray words").id)
    worker = run_worker("--burst", "--log-format", "json")
    entries = json_lines(worker)
    worker_id = next(m[1] for e in entries if (m := STARTED.match(e["message"])))
    [stray] = [entry for entry in entries if entry["logger"] == "tests.unconfigured"]
    assert stray["message"] == "stray words" and stray["level"] == "WARNING", stray
    assert stray["worker"] == worker_id
    [warning] = [entry for entry in entries if entry["logger"] == "py.warnings"]
    assert "UserWarning: stray words" in warning["message"], warning
    assert ended_attempts(entries)[(warned, 1)]["outcome"] == "SUCCESSFUL"


@in_worker_processes
def test_at_verbosity_2_the_traceback_stays_in_its_field(run_worker):
    final = int(tasks.fail.enqueue("kaboom").id)
    snoozed = int(snooze_tasks.planned.enqueue("SO").id)  # its snooze has a DEBUG line too
    worker = run_worker("--burst", "--log-format", "json", "-v", "2")
    entries = json_lines(worker)
    debug = [entry for entry in entries if entry["level"] == "DEBUG"]
    assert {entry.get("run_id") for entry in debug} >= {snoozed}, worker.output
    failure = ended_attempts(entries)[(final, 1)]
    assert "Traceback" not in failure["message"], failure
    assert failure["exception"].startswith("Traceback (most recent call last):"), failure


@in_worker_processes
def test_the_setting_chooses_json_and_the_option_wins_over_it(start_worker):
    first = int(tasks.add.enqueue(1, 2).id)
    worker = start_worker("--burst", env={"TASKMILL_TEST_LOG_FORMAT": "json"})
    assert worker.wait(120) == 0, worker.output
    assert ended_attempts(json_lines(worker))[(first, 1)]["outcome"] == "SUCCESSFUL"

    second = int(tasks.add.enqueue(3, 4).id)
    worker = start_worker(
        "--burst", "--log-format", "text", env={"TASKMILL_TEST_LOG_FORMAT": "json"}
    )
    assert worker.wait(120) == 0, worker.output
    assert not any(line.startswith("{") for line in worker.lines), worker.output
    assert (
        f" INFO taskmill.worker: Run {second} (tests.testapp.tasks.add) attempt 1 succeeded in "
        in worker.output
    )


@in_worker_processes
def test_an_invalid_setting_is_refused_naming_it_and_the_allowed_values(start_worker):
    worker = start_worker("--burst", env={"TASKMILL_TEST_LOG_FORMAT": "xml"})
    assert worker.wait(60) == 1, worker.output
    assert "CommandError: TASKMILL_LOG_FORMAT must be 'text' or 'json', not 'xml'." in worker.output
    assert "Traceback" not in worker.output


def test_an_invalid_setting_fails_the_system_check():
    with override_settings(TASKMILL_LOG_FORMAT="JSON"):
        errors = [issue for issue in checks.run_checks() if issue.id == "taskmill.E010"]
    assert [error.msg for error in errors] == [
        "TASKMILL_LOG_FORMAT must be 'text' or 'json', not 'JSON'."
    ]
    with override_settings(TASKMILL_LOG_FORMAT="json"):
        assert not [issue for issue in checks.run_checks() if issue.id == "taskmill.E010"]


@in_worker_processes
def test_a_command_error_is_a_json_line_too(run_worker):
    worker = run_worker("--burst", "--log-format", "json", "--queue", "nowhere", expect_code=1)
    [error] = [entry for entry in json_lines(worker) if entry["level"] == "ERROR"]
    assert error["message"].startswith("CommandError: Unknown queue 'nowhere'"), error


@in_worker_processes
def test_what_the_system_checks_find_is_a_json_line_too(start_worker):
    # TASKMILL_RESULT_TTL = "bad": taskmill.E007 stops the worker before it starts.
    worker = start_worker(
        "--burst", "--log-format", "json", env={"TASKMILL_TEST_RESULT_TTL": '"bad"'}
    )
    assert worker.wait(60) == 1, worker.output
    [error] = json_lines(worker)
    assert error["level"] == "ERROR", error
    assert error["message"].startswith("SystemCheckError: System check identified some issues")
    assert "(taskmill.E007) TASKMILL_RESULT_TTL must be" in error["message"], error


@in_worker_processes
def test_a_supervisors_children_each_write_their_own_worker_id(run_worker):
    runs = {int(result.id) for result in tasks.add.enqueue_many([((i, i), {}) for i in range(6)])}
    supervisor = run_worker(
        "--burst", "--processes", "2", "--label", "crew", "--log-format", "json"
    )
    entries = json_lines(supervisor)
    # The supervisor is no worker: its own lines carry no worker id.
    own = [entry for entry in entries if entry["logger"] == "taskmill.supervisor"]
    assert own and all("worker" not in entry for entry in own), supervisor.output
    children = [entry for entry in entries if entry["logger"] != "taskmill.supervisor"]
    started = {m[1] for entry in children if (m := STARTED.match(entry["message"]))}
    assert {worker_id.split("@")[0] for worker_id in started} == {"crew#1", "crew#2"}
    assert {entry["worker"] for entry in children} == started, supervisor.output
    attempts = ended_attempts(entries)
    assert {run_id for run_id, _ in attempts} == runs
    assert {entry["outcome"] for entry in attempts.values()} == {"SUCCESSFUL"}


# -- in a project's own LOGGING -------------------------------------------------------------


def test_the_formatter_and_the_filter_as_a_projects_logging_makes_them(monkeypatch):
    # Made as ``LOGGING`` makes them, both ways a formatter is named, without reconfiguring
    # the test process's logging.
    making = logging.config.DictConfigurator({})
    by_class = making.configure_formatter(
        {"class": "taskmill.logs.JSONFormatter", "format": "%(message)s"}
    )
    by_factory = making.configure_formatter({"()": "taskmill.logs.JSONFormatter"})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(by_class)
    handler.addFilter(making.configure_filter({"()": "taskmill.logs.WorkerFilter"}))
    logger = logging.getLogger("tests.json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    monkeypatch.setattr(WorkerFilter, "worker_id", "crew@host:42:abcdef")
    run = SimpleNamespace(id=7, task_path="shop.tasks.sync", attempt=2, queue_name="erp")
    try:
        logger.info(
            "Run %s synced",
            7,
            extra={**run_fields(run, **{OUTCOME: "SUCCESSFUL", DURATION: 0.25}), "tenant": "acme"},
        )
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logger.exception("It broke")
        logger.warning("caf\u00e9, and a lone surrogate from a task: \ud800")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert all(line.isascii() for line in lines), lines
    synced, broke, odd = (json.loads(line) for line in lines)
    assert TIME.fullmatch(synced.pop("time"))
    assert synced == {
        "level": "INFO",
        "logger": "tests.json_logs",
        "message": "Run 7 synced",
        "worker": "crew@host:42:abcdef",
        "run_id": 7,
        "task": "shop.tasks.sync",
        "attempt": 2,
        "queue": "erp",
        "outcome": "SUCCESSFUL",
        "duration": 0.25,
        "tenant": "acme",  # the project's own extra, under its own name
    }
    assert broke["message"] == "It broke"
    assert broke["exception"].startswith("Traceback (most recent call last):")
    assert broke["exception"].endswith("ValueError: boom\nsecond line")
    assert odd["message"] == "caf\u00e9, and a lone surrogate from a task: \ud800"
    # The factory form makes the same formatter.
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert json.loads(by_factory.format(record))["message"] == "hello"


def test_a_projects_text_formatter_reads_the_same_attributes():
    formatter = logging.Formatter(
        "%(taskmill_run_id)s/%(taskmill_attempt)s %(message)s",
        defaults={"taskmill_run_id": "-", "taskmill_attempt": "-"},
    )
    run = SimpleNamespace(id=7, task_path="shop.tasks.sync", attempt=2, queue_name="erp")
    record = logging.makeLogRecord({"msg": "about a run", **run_fields(run)})
    assert formatter.format(record) == "7/2 about a run"
    other = logging.makeLogRecord({"msg": "about nothing"})
    assert formatter.format(other) == "-/- about nothing"


def test_the_filter_adds_nothing_outside_a_worker_process(monkeypatch):
    monkeypatch.setattr(WorkerFilter, "worker_id", None)
    record = logging.makeLogRecord({"msg": "hello"})
    assert WorkerFilter().filter(record) is True
    assert not hasattr(record, WORKER)
