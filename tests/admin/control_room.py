"""The control room as data: who the tests log in as, the objects every page is shown with,
and every page and action of taskmill's admin with who may open or do it.

Shared by test_permission_matrix (who may) and test_page_queries (what each page costs).
A rule reads as a permission expression: codenames joined by spaces must all be held, ``|``
separates alternatives; ``staff`` is anyone let into the admin, ``nobody`` no one (not even
a superuser: the page exists only for Django's sake).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from taskmill.models import Batch, Queue, Run, Schedule, Worker

TASK = "tests.testapp.tasks.add"
SCHEDULED_TASK = "tests.testapp.scheduled_tasks.heartbeat"
ADMIN = "/admin/taskmill"
# The form that changes a queue's limits: for who may see the queues and change limits.
QUEUE_LIMITS = "view_queue change_queue_limits|change_queue change_queue_limits"

VIEW_ALL = ("view_run", "view_schedule", "view_queue", "view_worker")
# Each added, one at a time, to a user who may view everything.
ON_TOP_OF_VIEW = (
    "view_run_arguments",
    "retry_run",
    "cancel_run",
    "enqueue_run",
    "repoint_run",
    "delete_run",
    "pause_schedule",
    "add_schedule",
    "change_schedule",
    "delete_schedule",
    "pause_queue",
    "change_queue_limits",
    "delete_queue",
    "shutdown_worker",
    "delete_worker",
)
# Each held alone: an action needs the page it is on, so none of these acts by itself
# (except change_schedule, which in Django implies viewing).
ALONE = ("retry_run", "cancel_run", "enqueue_run", "repoint_run", "pause_schedule",
         "change_schedule", "pause_queue", "change_queue_limits", "shutdown_worker")  # fmt: skip

ROLES: dict[str, tuple[str, ...]] = {
    "anonymous": (),
    "superuser": (),
    "staff": (),
    "viewer": VIEW_ALL,
    **{f"+{codename}": (*VIEW_ALL, codename) for codename in ON_TOP_OF_VIEW},
    **{f"{codename} alone": (codename,) for codename in ALONE},
}


def make_users() -> dict[str, User | None]:
    """One user per role (no password: the client logs them in with force_login)."""
    users: dict[str, User | None] = {"anonymous": None}
    for role, codenames in ROLES.items():
        if role == "anonymous":
            continue
        user = User.objects.create(
            username=f"matrix {role}", is_staff=True, is_superuser=role == "superuser"
        )
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="taskmill", codename__in=codenames)
        )
        users[role] = user
    return users


def allowed(role: str, rule: str) -> bool:
    if role == "anonymous" or rule == "nobody":
        return False
    if role == "superuser" or rule == "staff":
        return True
    held = set(ROLES[role])
    return any(set(alternative.split()) <= held for alternative in rule.split("|"))


@dataclass
class World:
    """The rows the pages are shown with: a run in each state, a schedule, a queue, a worker."""

    failed: int
    failed_too: int  # not selected: reached only by "select all matching the filter"
    ready: int
    ready_too: int
    succeeded: int
    schedule: int
    queue: str
    worker: str
    batch: int


def make_run(status: str = "READY", **fields: Any) -> Run:
    now = timezone.now()
    finished = status in ("SUCCESSFUL", "FAILED", "CANCELLED")
    values = {
        "task_path": TASK, "backend": "default", "queue_name": "default", "args": [1, 2],
        "kwargs": {}, "enqueued_at": now, "available_at": now, "status": status,
        "finished_at": now if finished else None, "attempt": 1 if finished else 0,
        "last_attempted_at": now if finished else None,
    }  # fmt: skip
    return Run.objects.create(**{**values, **fields})


def make_schedule(name: str = "hourly", **fields: Any) -> Schedule:
    schedule = Schedule(
        name=name, task_path=SCHEDULED_TASK, kind="interval", interval=timedelta(hours=1), **fields
    )
    schedule.full_clean()
    schedule.save()
    return schedule


def make_worker(worker_id: str = "w-1") -> Worker:
    now = timezone.now()
    return Worker.objects.create(
        id=worker_id, host="h", pid=1, concurrency=2, started_at=now, last_heartbeat_at=now,
        state="RUNNING",
    )  # fmt: skip


def make_batch(description: str = "import", **fields: Any) -> Batch:
    values = {"backend": "default", "created_at": timezone.now(), "sealed": True}
    return Batch.objects.create(description=description, **{**values, **fields})


def make_world() -> World:
    return World(
        failed=make_run("FAILED").pk,
        failed_too=make_run("FAILED").pk,
        ready=make_run("READY").pk,
        ready_too=make_run("READY").pk,
        succeeded=make_run("SUCCESSFUL").pk,
        schedule=make_schedule().pk,
        queue=Queue.objects.create(name="default").pk,
        worker=make_worker().pk,
        batch=make_batch(total=3, succeeded=1, failed=1).pk,
    )


# -- pages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    label: str
    route: str  # "<model>:<pattern>", as the ModelAdmin's get_urls() declares it
    url: Callable[[World], str]
    rule: str
    ok: int = 200  # the status of an allowed GET


def _run(attr: str, suffix: str) -> Callable[[World], str]:
    return lambda w: f"{ADMIN}/run/{getattr(w, attr)}/{suffix}"


def _batch(suffix: str) -> Callable[[World], str]:
    return lambda w: f"{ADMIN}/batch/{w.batch}/{suffix}"


PAGES = [
    Page("dashboard", "dashboard:", lambda w: f"{ADMIN}/dashboard/", "view_run"),
    *(
        Page(
            f"dashboard fragment {name}",
            "dashboard:",
            lambda w, name=name: f"{ADMIN}/dashboard/?fragment={name}&window=day",
            "view_run",
        )
        for name in ("queues", "charts", "batches", "workers", "attention")
    ),
    Page("runs", "run:", lambda w: f"{ADMIN}/run/", "view_run"),
    Page(
        "runs filtered",
        "run:",
        lambda w: (
            f"{ADMIN}/run/?status=FAILED&queue_name=default&task_path={TASK}"
            "&enqueued_within=1h&o=-2"
        ),
        "view_run",
    ),
    Page("runs of unknown tasks", "run:", lambda w: f"{ADMIN}/run/?task_known=unknown", "view_run"),
    Page("runs searched by id", "run:", lambda w: f"{ADMIN}/run/?q={w.failed}", "view_run"),
    Page("runs searched by task", "run:", lambda w: f"{ADMIN}/run/?q=tasks.add", "view_run"),
    Page("runs searched by argument", "run:", lambda w: f"{ADMIN}/run/?q=a%3D1", "view_run"),
    Page("runs searched by metadata", "run:", lambda w: f"{ADMIN}/run/?q=meta:a%3D1", "view_run"),
    Page("runs, facets asked for", "run:", lambda w: f"{ADMIN}/run/?_facets=True", "view_run"),
    Page("enqueue form", "run:enqueue/", lambda w: f"{ADMIN}/run/enqueue/", "view_run enqueue_run"),
    Page("run page", "run:<path:object_id>/change/", _run("failed", "change/"), "view_run"),
    Page("run history", "run:<path:object_id>/history/", _run("failed", "history/"), "view_run"),
    Page("run add", "run:add/", lambda w: f"{ADMIN}/run/add/", "nobody"),
    Page(
        "delete a finished run",
        "run:<path:object_id>/delete/",
        _run("succeeded", "delete/"),
        "delete_run",
    ),
    Page(
        "delete an active run", "run:<path:object_id>/delete/", _run("ready", "delete/"), "nobody"
    ),
    Page("run, short url", "run:<path:object_id>/", _run("failed", ""), "staff", ok=302),
    *(
        page
        for model, key in (("schedule", "schedule"), ("queue", "queue"), ("worker", "worker"))
        for page in (
            Page(
                f"{model}s",
                f"{model}:",
                lambda w, m=model: f"{ADMIN}/{m}/",
                f"view_{model}|change_{model}",
            ),
            Page(
                f"{model} page",
                f"{model}:<path:object_id>/change/",
                lambda w, m=model, k=key: f"{ADMIN}/{m}/{getattr(w, k)}/change/",
                f"view_{model}|change_{model}",
            ),
            Page(
                f"{model} history",
                f"{model}:<path:object_id>/history/",
                lambda w, m=model, k=key: f"{ADMIN}/{m}/{getattr(w, k)}/history/",
                f"view_{model}|change_{model}",
            ),
            Page(
                f"{model} add",
                f"{model}:add/",
                lambda w, m=model: f"{ADMIN}/{m}/add/",
                "add_schedule" if model == "schedule" else "nobody",
            ),
            Page(
                f"{model} delete",
                f"{model}:<path:object_id>/delete/",
                lambda w, m=model, k=key: f"{ADMIN}/{m}/{getattr(w, k)}/delete/",
                f"delete_{model}",
            ),
            Page(
                f"{model}, short url",
                f"{model}:<path:object_id>/",
                lambda w, m=model, k=key: f"{ADMIN}/{m}/{getattr(w, k)}/",
                "staff",
                ok=302,
            ),
        )
    ),
    Page("batches", "batch:", lambda w: f"{ADMIN}/batch/", "view_run"),
    Page("batches, open ones", "batch:", lambda w: f"{ADMIN}/batch/?state=open&q=imp", "view_run"),
    Page("batch page", "batch:<path:object_id>/change/", _batch("change/"), "view_run"),
    Page("batch history", "batch:<path:object_id>/history/", _batch("history/"), "view_run"),
    Page("batch add", "batch:add/", lambda w: f"{ADMIN}/batch/add/", "nobody"),
    Page("batch delete", "batch:<path:object_id>/delete/", _batch("delete/"), "nobody"),
    Page("batch, short url", "batch:<path:object_id>/", _batch(""), "staff", ok=302),
    Page("runs of a batch", "run:", lambda w: f"{ADMIN}/run/?batch={w.batch}", "view_run"),
    Page(
        "queue limits form",
        "queue:<path:object_id>/limits/",
        lambda w: f"{ADMIN}/queue/{w.queue}/limits/",
        QUEUE_LIMITS,
    ),
    Page(
        "schedules by state",
        "schedule:",
        lambda w: f"{ADMIN}/schedule/?state=paused&q=hour",
        "view_schedule|change_schedule",
    ),
]


def admin_routes() -> set[str]:
    """Every URL taskmill's admin classes declare, as "<model>:<pattern>"."""
    return {
        f"{model._meta.model_name}:{pattern.pattern}"
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label == "taskmill"
        for pattern in model_admin.get_urls()
    }


# -- actions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    label: str
    route: str
    url: Callable[[World], str]
    data: Callable[[World], dict[str, Any]]
    rule: str
    done: Callable[[World], bool]  # whether the database shows it done
    logged: Callable[[World], dict[str, Any]]  # the LogEntry it leaves (besides its user)
    # Where it is offered: (a page of OFFERED_ON, what in its HTML shows it).
    offered: tuple[str, Callable[[World], str]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _status(pk: int) -> str:
    return Run.objects.get(pk=pk).status


def _list_action(model: str, name: str, selected: Callable[[World], list]) -> Callable:
    return lambda w: {"action": name, "_selected_action": [str(pk) for pk in selected(w)]}


def _option(model: str, name: str):
    return (f"{model}s", lambda w: f'<option value="{name}">')


def _log(model: str, pk: Callable[[World], Any], flag: int | None = None):
    def entry(w: World) -> dict[str, Any]:
        found = {"content_type__model": model, "object_id": str(pk(w))}
        return found if flag is None else {**found, "action_flag": flag}

    return entry


def _schedule(w: World) -> Schedule:
    return Schedule.objects.get(pk=w.schedule)


RUNS = f"{ADMIN}/run/"
# The pages that offer actions: lists (the actions menu), a run's page (its buttons), a
# schedule's page (Save).
OFFERED_ON: dict[str, Callable[[World], str]] = {
    "runs": lambda w: RUNS,
    "failed run page": lambda w: f"{RUNS}{w.failed}/change/",
    "ready run page": lambda w: f"{RUNS}{w.ready}/change/",
    "schedules": lambda w: f"{ADMIN}/schedule/",
    "schedule page": lambda w: f"{ADMIN}/schedule/{w.schedule}/change/",
    "queues": lambda w: f"{ADMIN}/queue/",
    "workers": lambda w: f"{ADMIN}/worker/",
}
# A schedule's form as a browser sends it (arguments ignored for who may not see them).
SCHEDULE_FORM = {
    "name": "hourly", "task_path": SCHEDULED_TASK, "args": "[]", "kwargs": "{}",
    "enabled": "on", "kind": "interval", "interval": "1:00:00", "timezone": "UTC",
    "misfire_grace": "0:01:00", "misfire_policy": "run_once", "priority": "",
}  # fmt: skip
VIEW_SCHEDULE = "view_schedule {0}|change_schedule {0}"

ACTIONS = [
    # A run's own buttons.
    Action("retry button", "run:<path:object_id>/act/<str:name>/",
           lambda w: f"{RUNS}{w.failed}/act/retry/", lambda w: {}, "view_run retry_run",
           lambda w: _status(w.failed) == "READY", _log("run", lambda w: w.failed),
           ("failed run page", lambda w: "tm-act-retry")),
    Action("cancel button", "run:<path:object_id>/act/<str:name>/",
           lambda w: f"{RUNS}{w.ready}/act/cancel/", lambda w: {}, "view_run cancel_run",
           lambda w: _status(w.ready) == "CANCELLED", _log("run", lambda w: w.ready),
           ("ready run page", lambda w: "tm-act-cancel")),
    Action("copy button", "run:<path:object_id>/act/<str:name>/",
           lambda w: f"{RUNS}{w.failed}/act/copy/", lambda w: {}, "view_run enqueue_run",
           lambda w: Run.objects.count() == 6, _log("run", lambda w: w.failed),
           ("failed run page", lambda w: "tm-act-copy")),
    Action("enqueue form", "run:enqueue/", lambda w: f"{RUNS}enqueue/",
           lambda w: {"task_path": TASK, "args": "[1, 2]", "kwargs": "{}"},
           "view_run enqueue_run", lambda w: Run.objects.count() == 6,
           lambda w: {"content_type__model": "run", "action_flag": 1},
           ("runs", lambda w: f"{RUNS}enqueue/")),
    # The runs list: the selected rows, and every row matching the filter.
    Action("retry selected", "run:", lambda w: RUNS,
           _list_action("run", "retry_runs", lambda w: [w.failed]), "view_run retry_run",
           lambda w: _status(w.failed) == "READY" and _status(w.failed_too) == "FAILED",
           _log("run", lambda w: w.failed), _option("run", "retry_runs")),
    Action("retry all matching", "run:", lambda w: f"{RUNS}?status=FAILED",
           lambda w: {**_list_action("run", "retry_runs", lambda w: [w.failed])(w),
                      "select_across": "1"},
           "view_run retry_run",
           lambda w: _status(w.failed) == _status(w.failed_too) == "READY",
           _log("run", lambda w: w.failed_too)),
    Action("cancel selected", "run:", lambda w: RUNS,
           _list_action("run", "cancel_runs", lambda w: [w.ready, w.failed]),
           "view_run cancel_run",
           lambda w: _status(w.ready) == "CANCELLED" and _status(w.ready_too) == "READY",
           _log("run", lambda w: w.ready), _option("run", "cancel_runs")),
    Action("cancel all matching", "run:", lambda w: f"{RUNS}?status=READY",
           lambda w: {**_list_action("run", "cancel_runs", lambda w: [w.ready])(w),
                      "select_across": "1"},
           "view_run cancel_run",
           lambda w: _status(w.ready) == _status(w.ready_too) == "CANCELLED",
           _log("run", lambda w: w.ready_too)),
    Action("copy selected", "run:", lambda w: RUNS,
           _list_action("run", "copy_runs", lambda w: [w.succeeded]), "view_run enqueue_run",
           lambda w: Run.objects.count() == 6, _log("run", lambda w: w.succeeded),
           _option("run", "copy_runs")),
    Action("point selected at another task", "run:", lambda w: RUNS,
           lambda w: {**_list_action("run", "repoint_runs", lambda w: [w.failed])(w),
                      "task_path": "tests.testapp.tasks.noop", "apply": "1"},
           "view_run repoint_run",
           lambda w: Run.objects.get(pk=w.failed).task_path == "tests.testapp.tasks.noop"
           and Run.objects.get(pk=w.failed_too).task_path == TASK,
           _log("run", lambda w: w.failed), _option("run", "repoint_runs")),
    Action("delete finished", "run:", lambda w: RUNS,
           _list_action("run", "delete_finished", lambda w: [w.succeeded, w.ready]),
           "view_run delete_run",
           lambda w: not Run.objects.filter(pk=w.succeeded).exists()
           and Run.objects.filter(pk=w.ready).exists(),
           _log("run", lambda w: w.succeeded, 3), _option("run", "delete_finished")),
    Action("Django's delete of runs", "run:", lambda w: RUNS,
           _list_action("run", "delete_selected", lambda w: [w.succeeded]), "nobody",
           lambda w: not Run.objects.filter(pk=w.succeeded).exists(),
           _log("run", lambda w: w.succeeded), _option("run", "delete_selected")),
    Action("delete page of a finished run", "run:<path:object_id>/delete/",
           lambda w: f"{RUNS}{w.succeeded}/delete/", lambda w: {"post": "yes"}, "delete_run",
           lambda w: not Run.objects.filter(pk=w.succeeded).exists(),
           _log("run", lambda w: w.succeeded, 3)),
    Action("delete page of an active run", "run:<path:object_id>/delete/",
           lambda w: f"{RUNS}{w.ready}/delete/", lambda w: {"post": "yes"}, "nobody",
           lambda w: not Run.objects.filter(pk=w.ready).exists(),
           _log("run", lambda w: w.ready, 3)),
    # Schedules.
    Action("run a schedule now", "schedule:", lambda w: f"{ADMIN}/schedule/",
           _list_action("schedule", "run_now", lambda w: [w.schedule]),
           VIEW_SCHEDULE.format("enqueue_run"),
           lambda w: Run.objects.filter(schedule_id=w.schedule).exists(),
           _log("schedule", lambda w: w.schedule), _option("schedule", "run_now")),
    Action("pause a schedule", "schedule:", lambda w: f"{ADMIN}/schedule/",
           _list_action("schedule", "pause", lambda w: [w.schedule]),
           VIEW_SCHEDULE.format("pause_schedule"), lambda w: _schedule(w).paused,
           _log("schedule", lambda w: w.schedule), _option("schedule", "pause")),
    Action("resume a schedule", "schedule:", lambda w: f"{ADMIN}/schedule/",
           _list_action("schedule", "resume", lambda w: [w.schedule]),
           VIEW_SCHEDULE.format("pause_schedule"), lambda w: not _schedule(w).paused,
           _log("schedule", lambda w: w.schedule), _option("schedule", "resume"),
           extra={"paused": True}),
    Action("disable a schedule", "schedule:", lambda w: f"{ADMIN}/schedule/",
           _list_action("schedule", "disable", lambda w: [w.schedule]), "change_schedule",
           lambda w: not _schedule(w).enabled, _log("schedule", lambda w: w.schedule),
           _option("schedule", "disable")),
    Action("enable a schedule", "schedule:", lambda w: f"{ADMIN}/schedule/",
           _list_action("schedule", "enable", lambda w: [w.schedule]), "change_schedule",
           lambda w: _schedule(w).enabled, _log("schedule", lambda w: w.schedule),
           _option("schedule", "enable"), extra={"disabled": True}),
    Action("edit a schedule", "schedule:<path:object_id>/change/",
           lambda w: f"{ADMIN}/schedule/{w.schedule}/change/",
           lambda w: {**SCHEDULE_FORM, "interval": "2:00:00"}, "change_schedule",
           lambda w: _schedule(w).interval == timedelta(hours=2),
           _log("schedule", lambda w: w.schedule, 2),
           ("schedule page", lambda w: 'name="_save"')),
    Action("add a schedule", "schedule:add/", lambda w: f"{ADMIN}/schedule/add/",
           lambda w: {**SCHEDULE_FORM, "name": "added"}, "add_schedule",
           lambda w: Schedule.objects.filter(name="added").exists(),
           lambda w: {"content_type__model": "schedule", "action_flag": 1},
           ("schedules", lambda w: f"{ADMIN}/schedule/add/")),
    Action("delete schedules", "schedule:", lambda w: f"{ADMIN}/schedule/",
           lambda w: {**_list_action("schedule", "delete_selected", lambda w: [w.schedule])(w),
                      "post": "yes"},
           VIEW_SCHEDULE.format("delete_schedule"),
           lambda w: not Schedule.objects.filter(pk=w.schedule).exists(),
           _log("schedule", lambda w: w.schedule, 3), _option("schedule", "delete_selected")),
    # Queues and workers.
    Action("pause a queue", "queue:", lambda w: f"{ADMIN}/queue/",
           _list_action("queue", "pause", lambda w: [w.queue]), "view_queue pause_queue",
           lambda w: Queue.objects.get(pk=w.queue).paused,
           _log("queue", lambda w: w.queue), _option("queue", "pause")),
    Action("resume a queue", "queue:", lambda w: f"{ADMIN}/queue/",
           _list_action("queue", "resume", lambda w: [w.queue]), "view_queue pause_queue",
           lambda w: not Queue.objects.get(pk=w.queue).paused,
           _log("queue", lambda w: w.queue), _option("queue", "resume"),
           extra={"queue_paused": True}),
    Action("change a queue's limits", "queue:<path:object_id>/limits/",
           lambda w: f"{ADMIN}/queue/{w.queue}/limits/",
           lambda w: {"concurrency_limit": "3", "rate_limit": "10/m"}, QUEUE_LIMITS,
           lambda w: Queue.objects.get(pk=w.queue).concurrency_limit == 3,
           _log("queue", lambda w: w.queue), ("queues", lambda w: "tm-change-limits")),
    Action("delete queues", "queue:", lambda w: f"{ADMIN}/queue/",
           lambda w: {**_list_action("queue", "delete_selected", lambda w: [w.queue])(w),
                      "post": "yes"},
           "view_queue delete_queue", lambda w: not Queue.objects.filter(pk=w.queue).exists(),
           _log("queue", lambda w: w.queue, 3), _option("queue", "delete_selected")),
    Action("shut a worker down", "worker:", lambda w: f"{ADMIN}/worker/",
           _list_action("worker", "shut_down", lambda w: [w.worker]),
           "view_worker shutdown_worker",
           lambda w: Worker.objects.get(pk=w.worker).shutdown_requested,
           _log("worker", lambda w: w.worker), _option("worker", "shut_down")),
    Action("delete workers", "worker:", lambda w: f"{ADMIN}/worker/",
           lambda w: {**_list_action("worker", "delete_selected", lambda w: [w.worker])(w),
                      "post": "yes"},
           "view_worker delete_worker", lambda w: not Worker.objects.filter(pk=w.worker).exists(),
           _log("worker", lambda w: w.worker, 3), _option("worker", "delete_selected")),
]  # fmt: skip
