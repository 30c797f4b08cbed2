"""What an operator can do to runs: retry, cancel (or stop), enqueue a copy, delete.

Each works on the selected rows or on every row matching the list's filter ("select all"),
in batches, through the control API (``taskmill.control``) so the admin does exactly what a
project's own code would. A run not in a state that allows the action is left as it is and
counted. Every change is written to the admin's log (LogEntry) under the user who did it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.db.models import QuerySet
from django.http import HttpRequest

from .. import control, registry
from ..compat import InvalidTask
from ..models import FINISHED_STATUSES, Run, RunStatus
from ..tasks import STORED_OPTIONS

BATCH = 500


@dataclass(frozen=True)
class RunAction:
    name: str
    label: str  # on the buttons and in the actions menu
    done: str  # for the message: "Retried 12 runs"
    permission: str  # codename in taskmill
    applies_to: tuple[str, ...]  # the statuses it makes sense for
    apply: Callable[[Run], bool]  # True if it changed something
    flag: int = CHANGE


def _copy(run: Run) -> bool:
    # A copy keeps how the run was to be run (the per-call options a run stores), not what
    # tied it to others (its dependencies have finished; a unique key is recomputed by the
    # task, if it has one).
    options = {key: value for key, value in (run.options or {}).items() if key in STORED_OPTIONS}
    task = registry.resolve(run.task_path).using(
        queue_name=run.queue_name, priority=run.priority, **options
    )
    task.enqueue(*run.args, **run.kwargs)
    return True


ACTIONS = {
    action.name: action
    for action in (
        RunAction(
            "retry",
            "Retry",
            "Retried",
            "retry_run",
            (RunStatus.FAILED, RunStatus.CANCELLED),
            lambda run: control.retry(run.pk),
        ),
        RunAction(
            "cancel",
            "Cancel or stop",
            "Cancelled or asked to stop",
            "cancel_run",
            (RunStatus.READY, RunStatus.WAITING, RunStatus.RUNNING),
            lambda run: control.cancel(run.pk),
        ),
        RunAction(
            "copy",
            "Enqueue a copy",
            "Enqueued a copy of",
            "enqueue_run",
            tuple(RunStatus),
            _copy,
        ),
    )
}


def available(request: HttpRequest, run: Run) -> list[RunAction]:
    """The actions a run's page offers this user: allowed, and fitting the run's state."""
    return [
        action
        for action in ACTIONS.values()
        if run.status in action.applies_to
        and request.user.has_perm(f"taskmill.{action.permission}")
    ]


def keyset_batches(queryset: QuerySet, size: int = BATCH) -> Iterator[list[Run]]:
    """Rows of ``queryset`` in batches by id: no OFFSET, no COUNT, however many match."""
    queryset = queryset.order_by("-id")
    last = None
    while True:
        page = queryset if last is None else queryset.filter(id__lt=last)
        batch = list(page[:size])
        if not batch:
            return
        yield batch
        last = batch[-1].pk


def perform(request: HttpRequest, action: RunAction, queryset: QuerySet) -> tuple[int, list[str]]:
    """Apply ``action`` to every run of ``queryset``; returns (changed, problems)."""
    changed, left, problems = 0, 0, []
    for batch in keyset_batches(queryset.filter(status__in=action.applies_to)):
        done = []
        for run in batch:
            try:
                if action.apply(run):
                    done.append(run.pk)
                else:
                    left += 1
            except (control.RunConflict, InvalidTask) as exc:
                problems.append(f"run {run.pk}: {exc}")
        if done:
            LogEntry.objects.log_actions(
                request.user.pk,
                Run.objects.filter(pk__in=done),
                action.flag,
                change_message=f"{action.done} (taskmill control room)",
            )
        changed += len(done)
    if left:
        problems.append(f"{left} run(s) had moved on meanwhile and were left as they are")
    return changed, problems


def report(modeladmin: admin.ModelAdmin, request: HttpRequest, action: RunAction, result) -> None:
    changed, problems = result
    level = messages.SUCCESS if changed and not problems else messages.WARNING
    text = f"{action.done} {changed} run(s)."
    if problems:
        text += " " + "; ".join(problems[:5]) + ("; …" if len(problems) > 5 else "")
    modeladmin.message_user(request, text, level)


def _list_action(action: RunAction):
    def run_action(modeladmin, request, queryset):
        report(modeladmin, request, action, perform(request, action, queryset))

    run_action.__name__ = f"{action.name}_runs"
    states = ", ".join(status.lower() for status in action.applies_to)
    description = (
        f"{action.label} of each selected run"
        if action.name == "copy"
        else f"{action.label}: the selected runs that are {states}"
    )
    return admin.action(description=description, permissions=[action.name])(run_action)


LIST_ACTIONS = [_list_action(action) for action in ACTIONS.values()]


@admin.action(description="Delete selected finished runs", permissions=["delete"])
def delete_finished(modeladmin, request, queryset):
    """Deletes finished runs only (an active run belongs to a worker or a schedule)."""
    deleted = 0
    for batch in keyset_batches(queryset.filter(status__in=FINISHED_STATUSES)):
        ids = [run.pk for run in batch]
        LogEntry.objects.log_actions(
            request.user.pk, Run.objects.filter(pk__in=ids), DELETION, change_message="Deleted"
        )
        deleted += (
            Run.objects.filter(pk__in=ids, status__in=FINISHED_STATUSES)
            .delete()[1]
            .get(Run._meta.label, 0)
        )
    modeladmin.message_user(request, f"Deleted {deleted} finished run(s).", messages.SUCCESS)
