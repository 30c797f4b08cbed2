"""Hostile input at the schedule doors: cron strings, declarations, schedule rows and
schedule files either work or are refused with a clear error, writing nothing; a real
scheduler fires strange-but-valid schedules and keeps going."""

from __future__ import annotations

import datetime as dt
import io
import json
import signal
from collections.abc import Callable
from typing import Any
from zoneinfo import available_timezones

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from hypothesis import example, given
from hypothesis import strategies as st

import taskmill
from taskmill.exceptions import InvalidSchedule
from taskmill.models import Run, Schedule
from taskmill.serialization import MAX_DEPTH
from taskmill.triggers import CronTrigger, validate_cron
from tests.conftest import wait_until
from tests.faults.hostile import (
    ECHO,
    FEW,
    any_text,
    arguments,
    as_json,
    nested,
    odd_keys,
    same_json,
    texts,
    values,
)

# Hypothesis examples and a real scheduler: the main leg runs this on every database.
pytestmark = pytest.mark.slow

# -- cron expressions ---------------------------------------------------------------------------

CRON_ATOMS = [
    *("*", "0", "5", "59", "60", "61", "-1", "7", "x", "?", "L", "LW", "5L", "SUN#1"),
    *("*/5", "*/61", "*/0", "*/25", "*/32", "*/13", "*/8", "0/61", "1-5/2", "1-5/100"),
    *("1-5", "5-1", "1,2,3", "MON", "mon-fri", "JAN"),
]
# Plus the empty field, NUL, a full-width digit one and an Arabic-Indic three.
cron_atoms = st.sampled_from([*CRON_ATOMS, "", "\x00", "\uff11", "\u0663"])
near_cron = st.lists(cron_atoms, min_size=4, max_size=7).map(" ".join)
cron_text = st.one_of(near_cron, st.text(max_size=30), any_text)


@FEW
@given(expression=cron_text)
def test_a_cron_expression_is_valid_and_fires_or_is_refused_clearly(expression: str) -> None:
    try:
        normalised = validate_cron(expression)
    except InvalidSchedule as exc:
        assert str(exc).startswith("Invalid cron expression"), str(exc)
        return
    trigger = CronTrigger(normalised, "Europe/Paris")
    start = dt.datetime(2026, 3, 28, tzinfo=dt.UTC)
    first = trigger.after(start)
    assert first is not None and first > start
    # The two questions a trigger answers agree (an expression may fire only years apart).
    assert trigger.latest(start, first, 3)[-1] == first


@pytest.mark.parametrize(
    "expression",
    [
        "*/61 * * * *",
        "0/61 * * * *",
        "* */25 * * *",
        "* * */32 * *",
        "* * * */13 *",
        "* * * * */8",
        "1-5/100 * * * *",
        "*/61 * * * * *",
        "* * * JAN-MAR/4 *",
        "* * * * MON-FRI/6",
    ],
)
def test_a_step_longer_than_its_range_is_refused(expression: str) -> None:
    """``*/61`` in the minute field would fire once an hour: surely not what was meant."""
    with pytest.raises(InvalidSchedule, match=r"the step \d+ in .* is larger than the"):
        validate_cron(expression)
    with pytest.raises(InvalidSchedule, match="is larger than"):
        taskmill.schedule(expression)


@pytest.mark.parametrize(
    "expression",
    ["*/60 * * * *", "*/59 * * * *", "* */24 * * *", "1-5/5 * * * *", "* * * JAN-MAR/3 *"],
)
def test_a_step_as_long_as_its_range_is_accepted(expression: str) -> None:
    assert validate_cron(expression) == expression


# -- schedule declarations ------------------------------------------------------------------------

zones = st.one_of(
    st.sampled_from(sorted(available_timezones())),
    st.sampled_from(
        ["", "UTC", "utc", "Mars/Olympus", "../etc/passwd", "Europe/Paris\x00", "+01:00"]
    ),
    st.text(max_size=12),
    st.integers(),
    st.none(),
)
durations = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.timedeltas(),
    st.sampled_from(["15s", "1m", "", "60", b"5", None, True, [5]]),
)
policies = st.one_of(
    st.sampled_from(["skip", "run_once", "catch_up", "SKIP", "", "never", None, 1, ["skip"]]),
    st.text(max_size=8),
)
moments = st.one_of(
    st.datetimes(timezones=st.just(dt.UTC)),
    st.datetimes(),  # naive: refused
    st.sampled_from(["2027-01-01", 0, None]),
)


def clear_refusal(exc: BaseException) -> None:
    assert isinstance(exc, InvalidSchedule), f"{type(exc).__name__}: {exc}"
    assert len(str(exc)) > 10, str(exc)


@FEW
@given(
    trigger=st.one_of(
        st.tuples(st.just("cron"), cron_text),
        st.tuples(st.just("every"), durations),
        st.tuples(st.just("at"), moments),
    ),
    tz=zones,
    misfire_policy=policies,
    misfire_grace=durations,
    args=st.one_of(st.lists(arguments, max_size=2), values),
    others=st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(texts, st.integers()),
            "kwargs": st.one_of(st.dictionaries(odd_keys, values, max_size=2), values),
            "queue_name": st.one_of(texts, st.none(), st.integers()),
            "priority": st.one_of(st.integers(), st.floats(), texts),
            "max_fires": st.one_of(st.integers(), st.floats(), texts),
            "enabled": st.one_of(st.booleans(), st.integers(), st.none()),
            "fire_time_kwarg": st.one_of(texts, st.integers()),
            "depends_on": st.one_of(texts, st.lists(st.one_of(texts, st.integers())), st.none()),
            "start": moments,
            "end": moments,
        },
    ),
)
def test_a_schedule_declaration_is_accepted_or_refused_clearly(
    trigger: tuple[str, Any],
    tz: Any,
    misfire_policy: Any,
    misfire_grace: Any,
    args: Any,
    others: dict[str, Any],
) -> None:
    kind, value = trigger
    options = {kind: value} if kind != "cron" else {"cron": value}
    try:
        taskmill.schedule(
            **options,
            tz=tz,
            misfire_policy=misfire_policy,
            misfire_grace=misfire_grace if misfire_grace is not None else 60,
            args=args,
            **others,
        )
    except Exception as exc:  # clear_refusal says which exceptions are right
        clear_refusal(exc)


def test_known_papercuts_say_what_is_wrong() -> None:
    with pytest.raises(InvalidSchedule, match="every= must be a positive interval"):
        taskmill.schedule(every=dt.timedelta(0))
    with pytest.raises(InvalidSchedule, match="every= must be a positive interval"):
        taskmill.schedule(every=0)
    with pytest.raises(InvalidSchedule, match="every= must be a timedelta or a number of seconds"):
        taskmill.schedule(every="15s")
    with pytest.raises(InvalidSchedule, match="must be a string"):
        taskmill.schedule(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidSchedule, match="time zone must be an IANA name"):
        taskmill.schedule("* * * * *", tz=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidSchedule, match="NUL character"):
        taskmill.schedule("* * * * *", args=["a\x00"])
    with pytest.raises(InvalidSchedule, match="args must be a list or tuple"):
        taskmill.schedule("* * * * *", args="abc")
    with pytest.raises(InvalidSchedule, match="name contains a NUL character"):
        taskmill.schedule("* * * * *", name="nightly\x00")
    with pytest.raises(InvalidSchedule, match=r"depends_on\[1\] contains a NUL character"):
        taskmill.schedule("* * * * *", depends_on=["a", "b\x00"])
    with pytest.raises(InvalidSchedule, match="at must be an aware datetime"):
        taskmill.schedule(at="2027-01-01")  # type: ignore[arg-type]


# -- schedules saved through the model (the admin's and the import's path) ------------------------


@pytest.mark.django_db
@FEW
@given(
    kind=st.sampled_from(["cron", "interval", "once", "weekly", ""]),
    cron=cron_text,
    interval=st.one_of(st.none(), st.timedeltas()),
    run_at=st.one_of(st.none(), st.datetimes(timezones=st.just(dt.UTC))),
    zone=st.one_of(st.sampled_from(["UTC", "Asia/Kathmandu", "Mars/Olympus", ""]), st.text()),
    policy=st.sampled_from(["skip", "run_once", "catch_up", "sometimes"]),
    grace=st.one_of(st.none(), st.timedeltas()),
    args=st.one_of(st.lists(arguments, max_size=2), st.dictionaries(texts, arguments)),
    kwargs=st.one_of(st.dictionaries(texts, arguments, max_size=2), st.lists(st.integers())),
)
def test_a_schedule_row_saves_or_is_refused_clearly(**fields: Any) -> None:
    before = Schedule.objects.count()
    schedule = Schedule(
        name=f"hostile {before}",
        task_path=ECHO,
        kind=fields["kind"],
        cron=fields["cron"],
        interval=fields["interval"],
        run_at=fields["run_at"],
        timezone=fields["zone"],
        misfire_policy=fields["policy"],
        misfire_grace=fields["grace"] if fields["grace"] is not None else dt.timedelta(60),
        args=fields["args"],
        kwargs=fields["kwargs"],
    )
    try:
        schedule.full_clean()
    except ValidationError as exc:
        assert exc.message_dict, exc
        assert all(messages for messages in exc.message_dict.values())
        assert Schedule.objects.count() == before
        return
    schedule.save()
    stored = Schedule.objects.get(pk=schedule.pk)
    assert same_json(stored.args, as_json(fields["args"]))
    assert Schedule.objects.count() == before + 1


# -- schedule files -------------------------------------------------------------------------------


def valid_entry(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "task_path": ECHO,
        "kind": "cron",
        "cron": "0 8 * * *",
        "interval": None,
        "run_at": None,
        "timezone": "Europe/Paris",
        "start_at": None,
        "end_at": None,
        "max_fires": None,
        "enabled": True,
        "args": [1, "two"],
        "kwargs": {"lang": "fr"},
        "queue_name": "",
        "priority": None,
        "backend": "",
        "misfire_grace": 60,
        "misfire_policy": "run_once",
        "fire_time_kwarg": "",
        "depends_on": [],
        "code_owned": False,
    }


def document(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"format": "taskmill-schedules", "version": 1, "schedules": list(entries)}


FIELDS = list(valid_entry("x"))
hostile_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(texts, children, max_size=3)
    ),
    max_leaves=6,
)
field_values = st.one_of(
    hostile_json,
    cron_text,
    st.sampled_from(
        [
            "*/61 * * * *",
            "interval",
            "once",
            -5,
            0,
            1e300,
            10**30,
            "2027-01-01",
            "2027-01-01T08:00:00",
            "2027-01-01T08:00:00+00:00",
            "9999-12-31T23:59:59+00:00",
            "0001-01-01T00:00:00+00:00",
            ["ghost"],
            ["x"],
            "Mars/Olympus",
            nested(MAX_DEPTH + 1),
            ["a\x00"],
            {"k": "\ud800"},
        ]
    ),
)


def edited_document(edits: list[tuple[str, Any]]) -> dict[str, Any]:
    entry = valid_entry("imported")
    for field, value in edits:
        entry[field] = value
    return document(entry)


files = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda data: data.decode("latin-1")),
    hostile_json.map(json.dumps),
    st.lists(st.tuples(st.sampled_from(FIELDS), field_values), min_size=1, max_size=3).map(
        lambda edits: json.dumps(edited_document(edits))
    ),
    st.just('{"format": "taskmill-schedules", "version": 1, "schedules": [NaN]}'),
    st.just('{"format": "taskmill-schedules", "format": "x", "version": 1, "schedules": []}'),
)


def snapshot() -> list[tuple[Any, ...]]:
    names = [field.attname for field in Schedule._meta.concrete_fields]
    return list(Schedule.objects.order_by("name").values_list(*names))


def edited(**fields: Any) -> str:
    return json.dumps(edited_document(list(fields.items())))


@pytest.mark.django_db
@FEW
@given(text=files)
@example(text=edited(cron="*/61 * * * *"))  # a bad cron inside an otherwise valid file
@example(text=edited(cron="0 8 * * * * *"))
@example(text=edited(args=["a\x00"]))  # PostgreSQL's jsonb refuses NUL
@example(text=edited(kwargs={"k": nested(MAX_DEPTH)}))  # MariaDB refuses the depth
@example(text=edited(kind="interval", cron="", interval=5e13))  # overflows a BIGINT
@example(text=edited(kind="interval", cron="", interval=1e300))
@example(text=edited(kind="interval", cron="", interval=0))
@example(text=edited(kind="once", cron="", run_at="9999-12-31T23:59:59+00:00"))
@example(text=edited(start_at="9999-12-31T23:59:59+00:00"))
@example(text=edited(misfire_grace=1e15))
@example(text=edited(timezone="Mars/Olympus", misfire_policy="sometimes", priority=10**6))
@example(text=edited(max_fires=-1, fire_time_kwarg="not a name", depends_on=["ghost"]))
@example(text=edited(depends_on=["imported"]))  # depends on itself
@example(text=edited(name="nul\x00name"))  # PostgreSQL refuses NUL in any text
@example(text=edited(queue_name="q\x00"))
@example(text=edited(task_path="tests.testapp.hostile_tasks.echo\x00"))
@example(text=edited(depends_on=["ghost\x00"]))
@example(text=edited(backend="\x00"))
def test_import_schedules_imports_a_file_or_refuses_it_writing_nothing(
    text: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("import") / "schedules.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = snapshot()
    try:
        call_command("taskmill", "import-schedules", str(path), stdout=io.StringIO())
    except CommandError as exc:
        message = str(exc)
        assert len(message) > 20, message
        assert snapshot() == before, "a refused import wrote something"
        return
    # Accepted: every schedule stored is valid as the admin would judge it.
    for schedule in Schedule.objects.all():
        schedule.full_clean(validate_unique=False)


# -- a scheduler fed strange-but-valid schedules keeps firing ------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_real_scheduler_fires_strange_but_valid_schedules_and_keeps_going(
    start_worker: Callable[..., Any],
) -> None:
    now = timezone.now()
    strange = [
        ("every second, odd zone", {"kind": "interval", "interval": dt.timedelta(seconds=1),
                                    "timezone": "Asia/Kathmandu"}),
        ("cron with seconds, names", {"kind": "cron", "cron": "*/1 * * * JAN-DEC SUN-SAT",
                                      "timezone": "Pacific/Chatham"}),
        ("once, just now", {"kind": "once", "run_at": now}),
        ("tiny interval", {"kind": "interval", "interval": dt.timedelta(microseconds=1),
                           "misfire_policy": "catch_up"}),
    ]  # fmt: skip
    args = [10**300, "\U0001f600", {"": [None, -0.0]}, nested(MAX_DEPTH - 4)]
    for position, (name, fields) in enumerate(strange):
        Schedule(name=name, task_path=ECHO, args=args, kwargs={"n": position}, **fields).save()

    worker = start_worker("--concurrency", "2")

    def every_schedule_has_a_successful_run() -> bool:
        done = Run.objects.filter(status="SUCCESSFUL", schedule__isnull=False)
        return len(set(done.values_list("schedule_id", flat=True))) == len(strange)

    wait_until(every_schedule_has_a_successful_run, 60, message=lambda: f"fires:\n{worker.output}")
    # Still firing: more runs of the per-second schedule come after the first round.
    fired = Run.objects.filter(schedule__name="every second, odd zone").count()
    wait_until(
        lambda: Run.objects.filter(schedule__name="every second, odd zone").count() > fired + 1,
        30,
        message="the scheduler kept firing",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0, worker.output
    failed = Run.objects.exclude(status__in=["SUCCESSFUL", "READY", "RUNNING"])
    assert not failed.exists(), list(failed.values_list("status", "errors"))
    for row in Run.objects.filter(status="SUCCESSFUL"):
        assert same_json(row.return_value[0], as_json(args)), row.return_value
