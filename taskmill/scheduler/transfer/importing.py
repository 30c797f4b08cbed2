"""Reading a schedules document back: parse, check everything, then write all or nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction

from ...models import Schedule
from .document import (
    DOCUMENT_KEYS,
    EXTRA_KEYS,
    FIELDS,
    FORMAT,
    REQUIRED,
    VERSION,
    Edge,
    TransferError,
    _boolean,
    _names,
    _WrongType,
)

# -- reading a document ---------------------------------------------------------------------


@dataclass
class Entry:
    """One schedule of a document, with its values read into the model's types."""

    position: int
    name: str
    values: dict[str, Any]  # every field of FIELDS; omitted ones hold the model's default
    depends_on: list[str]
    code_owned: bool

    @property
    def label(self) -> str:
        return f"Schedule {self.name!r} (schedules[{self.position}])"


def _label(position: int, item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    if isinstance(name, str):
        return f"Schedule {name!r} (schedules[{position}])"
    return f"schedules[{position}]"


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys silently; a document that says a thing
    # twice is refused instead of guessed at.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_document(text: str | bytes) -> list[Entry]:
    """Read and check the document's structure and types; raise ``TransferError`` if wrong.

    Checks that need the database (tasks, names, the graph) come later, in the import.
    """
    try:
        data = json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise TransferError([f"The file is not valid JSON: {exc}."]) from None
    if not isinstance(data, dict):
        raise TransferError(["The document must be a JSON object."])
    if data.get("format") != FORMAT:
        raise TransferError(
            [
                f"The document's format is {data.get('format')!r}, not {FORMAT!r}: not a "
                "taskmill schedules export."
            ]
        )
    if data.get("version") != VERSION:
        raise TransferError(
            [
                f"The document's version is {data.get('version')!r}; this taskmill reads "
                f"version {VERSION}."
            ]
        )
    problems = [f"Unknown top-level key {key!r}." for key in data if key not in DOCUMENT_KEYS]
    schedules = data.get("schedules")
    if not isinstance(schedules, list):
        problems.append("The document needs a 'schedules' list.")
        raise TransferError(problems)
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for position, item in enumerate(schedules):
        entry = _read_entry(position, item, problems)
        if entry is None:
            continue
        if entry.name in seen:
            problems.append(
                f"{entry.label}: the name is already used by schedules[{seen[entry.name]}]."
            )
            continue
        seen[entry.name] = position
        entries.append(entry)
    if problems:
        raise TransferError(problems)
    return entries


def _read_entry(position: int, item: Any, problems: list[str]) -> Entry | None:
    label = _label(position, item)
    if not isinstance(item, dict):
        problems.append(f"{label} must be a JSON object.")
        return None
    found: list[str] = []
    for key in item:
        if key not in FIELDS and key not in EXTRA_KEYS:
            found.append(f"{label}: unknown field {key!r}.")
    for key in REQUIRED:
        if key not in item:
            found.append(f"{label}: the field {key!r} is missing.")
    values: dict[str, Any] = {}
    for key, spec in FIELDS.items():
        if key not in item:
            # An omitted field takes the model's default: the document is the whole
            # definition, so an update resets what the file leaves out.
            values[key] = Schedule._meta.get_field(key).get_default()
            continue
        try:
            values[key] = spec.read(item[key])
        except (_WrongType, OverflowError) as exc:
            found.append(f"{label}, field {key!r}: {exc}.")
    depends_on: list[str] = []
    code_owned = False
    try:
        depends_on = _names(item.get("depends_on", []))
    except _WrongType as exc:
        found.append(f"{label}, field 'depends_on': {exc}.")
    try:
        code_owned = _boolean(item.get("code_owned", False))
    except _WrongType as exc:
        found.append(f"{label}, field 'code_owned': {exc}.")
    if found:
        problems.extend(found)
        return None
    return Entry(position, values["name"], values, list(dict.fromkeys(depends_on)), code_owned)


# -- import ---------------------------------------------------------------------------------


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # declared in code: never imported

    def __str__(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped (declared in code)"
        )


# Told how far an import got: ("checked" or "written", entries done, entries to do).
ImportProgress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass
class _Planned:
    entry: Entry
    row: Schedule
    changed: bool


def import_entries(
    entries: list[Entry],
    database: str,
    *,
    update: bool = True,
    dry_run: bool = False,
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Create or update the schedules in ``entries``, all or nothing.

    Raises ``TransferError`` listing every problem, having written nothing.
    """
    try:
        with transaction.atomic(using=database):
            return _import(
                entries, database, update=update, dry_run=dry_run, progress=progress or _no_progress
            )
    except IntegrityError as exc:
        # A schedule of the same name was created by someone else meanwhile.
        raise TransferError([f"The database refused the import: {exc}."]) from exc
    except ValidationError as exc:
        # The model's own cycle check on adding an edge: the backstop for a concurrent edit.
        raise TransferError(exc.messages) from exc


def _import(
    entries: list[Entry], database: str, *, update: bool, dry_run: bool, progress: ImportProgress
) -> ImportReport:
    report = ImportReport()
    problems: list[str] = []
    # Locked so that a concurrent code sync or import cannot change them under this one.
    rows = {
        row.name: row
        for row in Schedule.objects.using(database)
        .select_for_update()
        .filter(name__in=[entry.name for entry in entries])
    }
    current_dependencies = _dependency_names(database, [row.pk for row in rows.values()])
    planned: list[_Planned] = []
    for checked, entry in enumerate(entries):
        progress("checked", checked, len(entries))
        row = rows.get(entry.name)
        if entry.code_owned:
            # Never written, but checked all the same: a file that is broken anywhere is
            # refused whole, or a broken export would pass for a good one.
            problems.extend(_field_problems(entry, Schedule(), code_owned=True))
            report.skipped.append(entry.name)
            continue
        if row is not None and row.code_owned:
            problems.append(
                f"{entry.label}: a schedule of this name is declared in code here; the code "
                "owns it and an import cannot change it (remove it from the file)."
            )
            continue
        if row is not None and not update:
            problems.append(f"{entry.label}: a schedule of this name exists (--no-update).")
            continue
        target = row if row is not None else Schedule()
        before = {key: getattr(target, key) for key in FIELDS} if row is not None else None
        found = _field_problems(entry, target)
        if found:
            problems.extend(found)
            continue
        changed = (
            before is None
            or before != {key: getattr(target, key) for key in FIELDS}
            or set(current_dependencies.get(target.pk, ())) != set(entry.depends_on)
        )
        planned.append(_Planned(entry, target, changed))
    progress("checked", len(entries), len(entries))
    problems.extend(_check_graph(entries, database))
    if problems:
        raise TransferError(problems)

    for item in planned:
        if item.row.pk is None:
            report.created.append(item.entry.name)
        elif item.changed:
            report.updated.append(item.entry.name)
        else:
            report.unchanged.append(item.entry.name)
    if dry_run:
        return report
    to_write = [item for item in planned if item.changed]
    for written, item in enumerate(to_write):
        progress("written", written, len(to_write))
        # save() computes the next fire time for a new or changed trigger.
        item.row.save(using=database)
    progress("written", len(to_write), len(to_write))
    _write_dependencies(planned, database)
    return report


def _field_problems(entry: Entry, target: Schedule, *, code_owned: bool = False) -> list[str]:
    """Set the entry's values on ``target`` and check them with the model's own validation
    (cron, time zone, task, backend, queue...), the same as the admin form and the code
    sync; one message per problem, naming the entry and the field."""
    for key, value in entry.values.items():
        setattr(target, key, value)
    try:
        target.full_clean(validate_unique=False)
    except ValidationError as exc:
        label = f"{entry.label} (declared in code, not imported)" if code_owned else entry.label
        return [
            f"{label if key == NON_FIELD_ERRORS else f'{label}, field {key!r}'}: {message}"
            for key, messages in exc.message_dict.items()
            for message in messages
        ]
    return []


def _dependency_names(database: str, ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    edges = Edge.objects.using(database).filter(from_schedule_id__in=ids)
    for source, target in edges.values_list("from_schedule_id", "to_schedule__name"):
        found.setdefault(source, []).append(target)
    return found


def _check_graph(entries: list[Entry], database: str) -> list[str]:
    """Unknown dependency names, and cycles in the graph as it would be after the import."""
    to_write = [entry for entry in entries if not entry.code_owned]
    if not any(entry.depends_on for entry in to_write):
        # No edge added, so no cycle can appear (removing edges never makes one).
        return []
    existing = set(Schedule.objects.using(database).values_list("name", flat=True))
    written = {entry.name for entry in to_write}
    in_file_code_owned = {entry.name for entry in entries if entry.code_owned}
    problems: list[str] = []
    # Every entry's names are checked, even one refused for another reason: one run of the
    # command reports all that is wrong.
    for entry in to_write:
        for name in entry.depends_on:
            if name in existing or name in written:
                continue
            hint = (
                " (it is declared in code in the exported project: run "
                "'manage.py taskmill sync-schedules' here first)"
                if name in in_file_code_owned
                else ""
            )
            problems.append(
                f"{entry.label}, field 'depends_on': {name!r} is not a schedule in the "
                f"file or the database{hint}."
            )
    if problems:
        return problems
    # The graph after the import: the stored edges, with each imported schedule's own
    # dependencies replaced by the file's.
    graph: dict[str, list[str]] = {}
    for source, target in Edge.objects.using(database).values_list(
        "from_schedule__name", "to_schedule__name"
    ):
        graph.setdefault(source, []).append(target)
    for entry in to_write:
        graph[entry.name] = entry.depends_on
    cycle = _find_cycle(graph, [entry.name for entry in to_write])
    if cycle:
        label = next(entry.label for entry in to_write if entry.name == cycle[0])
        return [
            f"{label}, field 'depends_on': schedule dependencies must not form a cycle: "
            f"{' -> '.join(cycle)} (each depends on the next)."
        ]
    return []


def _find_cycle(graph: dict[str, list[str]], starts: list[str]) -> list[str]:
    """A cycle through the graph reachable from ``starts`` (as a closed path), or []."""
    # Iterative depth-first search: a graph of many schedules must not hit the recursion
    # limit. Any cycle involves an imported schedule (the stored graph was acyclic), so
    # starting from them finds it.
    done: set[str] = set()
    for start in starts:
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(graph.get(start, ()))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if following in on_path:
                return [*path[path.index(following) :], following]
            if following not in done:
                path.append(following)
                on_path.add(following)
                stack.append(iter(graph.get(following, ())))
    return []


def _write_dependencies(planned: list[_Planned], database: str) -> None:
    # Removals first, then additions: every graph in between is part of the final one,
    # which is acyclic, so the model's own cycle check (on each added edge) cannot object
    # to a state that exists only halfway through the import.
    names = {name for item in planned for name in item.entry.depends_on}
    ids = dict(Schedule.objects.using(database).filter(name__in=names).values_list("name", "pk"))
    current: dict[int, set[int]] = {}
    edges = Edge.objects.using(database).filter(
        from_schedule_id__in=[item.row.pk for item in planned]
    )
    for source, target in edges.values_list("from_schedule_id", "to_schedule_id"):
        current.setdefault(source, set()).add(target)
    wanted = {item.row.pk: {ids[name] for name in item.entry.depends_on} for item in planned}
    for item in planned:
        extra = current.get(item.row.pk, set()) - wanted[item.row.pk]
        if extra:
            item.row.depends_on.remove(*extra)
    for item in planned:
        missing = wanted[item.row.pk] - current.get(item.row.pk, set())
        if missing:
            item.row.depends_on.add(*missing)
