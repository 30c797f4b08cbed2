"""docs/deployment.md is copied into unit files and manifests: what it shows must work.

Every ``taskmill <subcommand> ...`` in its code blocks (a shell line, a systemd ExecStart, a
Dockerfile CMD or a Kubernetes ``command`` list) is parsed by that subcommand's real parser,
every metric it names is one ``taskmill.metrics.render()`` writes, with the labels and states
it uses, and every link to a section of the docs finds that section.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from taskmill.management.commands.taskmill import SUBCOMMANDS
from taskmill.metrics import render
from taskmill.models import RunStatsHourly
from tests.conftest import ROOT, only_on

DOCS = ROOT / "docs"
PAGE = DOCS / "deployment.md"

pytestmark = [
    pytest.mark.django_db,
    only_on("sqlite", "it reads a page of the docs; the metrics' SQL is tested everywhere"),
]

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A list in JSON form: a Dockerfile's exec-form CMD, a YAML flow sequence of quoted strings.
LIST = re.compile(r"\[[^\[\]]*\]")
# Where a line runs a subcommand, in any of the forms above: each must be read.
MENTION = re.compile(
    r"\b(?:manage\.py|django)[\"',\s]+taskmill[\"',\s]+("
    + "|".join(map(re.escape, SUBCOMMANDS))
    + r")\b"
)
METRIC = re.compile(r"\btaskmill_[a-z_]+\b")
SELECTOR = re.compile(r"\b(taskmill_[a-z_]+)\{([^}]*)\}")
LABEL = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"([^\"]*)\"")


def code_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def _tokens(line: str) -> Iterator[list[str]]:
    """The word lists a line holds: JSON lists, or else the line as a shell reads it, up to
    the first operator (``|| exit 1``, ``> /dev/null``)."""
    found = False
    for match in LIST.finditer(line):
        try:
            words = json.loads(match.group())
        except ValueError:
            continue
        if isinstance(words, list) and all(isinstance(word, str) for word in words):
            found = True
            yield words
    if found:
        return
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        if word and all(char in lexer.punctuation_chars for char in word):
            break
        words.append(word)
    yield words


def commands(block: str) -> Iterator[tuple[str, list[str]]]:
    """(the line, its arguments from the subcommand on) for each taskmill command in a code
    block; a line that names a subcommand but yields none fails the test, not the check."""
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"^\s*(?:ExecStart|ExecReload)=", "", line)  # systemd's key=command
        seen = False
        for words in _tokens(line):
            for at, word in enumerate(words[:-1]):
                if word == "taskmill" and words[at + 1] in SUBCOMMANDS:
                    seen = True
                    yield line.strip(), words[at + 1 :]
        if MENTION.search(line):
            assert seen, f"docs/deployment.md: cannot read the taskmill command in {line!r}"


def taskmill_parser():
    app = get_commands()["taskmill"]
    return load_command_class(app, "taskmill").create_parser("manage.py", "taskmill")


def test_every_command_shown_is_accepted_by_its_subcommand():
    parser = taskmill_parser()
    shown = [found for block in code_blocks(PAGE.read_text()) for found in commands(block)]
    for line, arguments in shown:
        try:
            parsed = parser.parse_args(arguments)
        except CommandError as exc:
            pytest.fail(f"docs/deployment.md shows {line!r}, which taskmill refuses: {exc}")
        assert parsed.subcommand == arguments[0]
    # The page's point is these: a parser that found nothing would pass vacuously.
    assert {arguments[0] for _, arguments in shown} >= {"worker", "scheduler", "health", "status"}
    flags = {word for _, arguments in shown for word in arguments if word.startswith("--")}
    assert flags >= {"--shutdown-timeout", "--processes", "--no-scheduler", "--log-format"}


def test_the_check_refuses_what_taskmill_would():
    parser = taskmill_parser()
    for arguments in (
        ["worker", "--graceful-timeout", "600"],  # no such flag
        ["worker", "--concurrency", "eight"],  # not a number
        ["health", "--queue", "emails"],  # a worker's flag, not health's
        ["worker", "--log-format", "yaml"],  # not a choice
    ):
        with pytest.raises(CommandError):
            parser.parse_args(arguments)
    doc = '  command: ["python", "manage.py", "taskmill", "worker", "--drain"]\n'
    ((_, arguments),) = commands(doc)
    assert arguments == ["worker", "--drain"]
    with pytest.raises(CommandError):
        parser.parse_args(arguments)
    shell = "CMD python manage.py taskmill health --max-ready-age 600 || exit 1\n"
    assert [arguments for _, arguments in commands(shell)] == [["health", "--max-ready-age", "600"]]
    with pytest.raises(AssertionError, match="cannot read"):
        list(commands('command: ["python", "manage.py", "taskmill", "worker",\n'))


def rendered_metrics() -> dict[str, list[dict[str, str]]]:
    """Each metric name render() writes (a histogram's series included), with its samples'
    labels. One hour of rollups, so that the counters and histograms have samples too."""
    RunStatsHourly.objects.create(
        hour=(timezone.now() - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0),
        queue_name="default",
        task_path="tests.testapp.tasks.add",
        status="SUCCESSFUL",
        count=3,
    )
    metrics: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families("".join(render("default"))):
        metrics.setdefault(family.name, [])
        for sample in family.samples:
            metrics.setdefault(sample.name, []).append(sample.labels)
    return metrics


def test_every_metric_named_is_rendered_with_those_labels():
    metrics = rendered_metrics()
    text = PAGE.read_text()
    named = set(METRIC.findall(text))
    assert named >= {"taskmill_queue_oldest_ready_seconds", "taskmill_queue_runs"}
    assert not named - metrics.keys(), f"not rendered: {sorted(named - metrics.keys())}"
    for name, selector in SELECTOR.findall(text):
        samples = metrics[name]
        assert samples, f"{name} has no sample to check {selector!r} against"
        for label, value in LABEL.findall(selector):
            assert any(label in labels for labels in samples), f"{name} has no label {label!r}"
            if label == "state":
                states = {labels["state"] for labels in samples}
                assert value in states, f"{name}: state {value!r} is not one of {states}"


def anchors(path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as
    hyphens."""
    text = FENCE.sub("", path.read_text())
    headings = re.findall(r"^#+\s+(.+?)\s*$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_link_to_a_section_finds_it():
    links = re.findall(r"\]\(([\w\-]*\.md)?#([\w\-]+)\)", PAGE.read_text())
    assert len(links) > 10
    for page, anchor in links:
        target = DOCS / page if page else PAGE
        assert anchor in anchors(target), f"docs/deployment.md links to {page}#{anchor}"
