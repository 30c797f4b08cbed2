"""The house rules of the source tree (issue 22), checked so that they keep holding.

Each rule names the place where the next capabilities plug in: vendor knowledge only in
``taskmill/db/`` (behind the engine contract), the models below the scheduler, one status
vocabulary, and a worker of small collaborators. A rule broken by a change fails here, with
the file and line, instead of being found in a review.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import taskmill

SOURCE = Path(taskmill.__file__).parent
WORKER_MODULE_LIMIT = 350


def _python_files(under: Path) -> list[Path]:
    return sorted(path for path in under.rglob("*.py") if "migrations" not in path.parts)


def _relative(path: Path) -> str:
    return str(path.relative_to(SOURCE.parent))


def test_the_vendor_is_known_only_inside_db():
    """Outside ``taskmill/db/``, code reads the engine's capability flags, never the vendor.
    Allowed: checks.py (it inspects settings), the index definitions Django hands a schema
    editor, and a vendor's name in a message."""
    vendor_test = re.compile(r"\.vendor\b|connection\.features|connections\[.*\]\.features")
    found = []
    for path in _python_files(SOURCE):
        if path.parent.name == "db" or path.name == "checks.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not vendor_test.search(line):
                continue
            a_schema_editor = "schema_editor.connection.features" in line
            a_message = line.lstrip().startswith(('f"', "f'", '"', "'"))
            if not (a_schema_editor or a_message):
                found.append(f"{_relative(path)}:{number}: {line.strip()}")
    assert found == []


def _imported_modules(path: Path) -> set[str]:
    """Every module PATH imports, at the top or inside a function, made absolute."""
    package = ".".join(path.relative_to(SOURCE.parent).with_suffix("").parts[:-1])
    return _imports_in(path.read_text(), package)


def _imports_in(source: str, package: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            modules.add(name)
            modules.update(f"{name}.{alias.name}" for alias in node.names)
    return modules


def test_the_models_import_nothing_from_the_scheduler():
    """The scheduler builds on the models; rules the models need live below both."""
    found = {
        _relative(path): sorted(m for m in _imported_modules(path) if "taskmill.scheduler" in m)
        for path in _python_files(SOURCE / "models")
    }
    assert {path: modules for path, modules in found.items() if modules} == {}


def test_the_import_check_sees_imports_inside_functions():
    # The rule above would pass on a reader that misses imports: prove it sees a lazy,
    # relative one.
    source = "def clean(self):\n    from ..scheduler.dag import find_cycle\n"
    assert "taskmill.scheduler.dag" in _imports_in(source, "taskmill.models")


STATUS_WORDS = ("READY", "WAITING", "RUNNING", "SUCCESSFUL", "FAILED", "CANCELLED")


def test_run_statuses_are_spoken_through_run_status():
    """A run's status is written ``RunStatus.X`` in Python and ``'{RunStatus.X}'`` in SQL:
    one vocabulary, which a search for a member finds whole. Column headings are words for
    people, not statuses, and ``TaskResultStatus`` belongs to Django's ``TaskResult``."""
    literal = re.compile(r"""(['"])(""" + "|".join(STATUS_WORDS) + r""")\1""")
    found = []
    for path in _python_files(SOURCE):
        if path.name == "status.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if literal.search(line) and not _a_heading(line):
                found.append(f"{_relative(path)}:{number}: {line.strip()}")
    assert found == []


def _a_heading(line: str) -> bool:
    # `taskmill status`'s table headings: a list of several upper-case words.
    return line.strip().startswith("[") and len(re.findall(r'"[A-Z ]+"', line)) > 2


def test_no_worker_module_grows_past_its_limit():
    """The worker is made of collaborators with one job each; a module over the limit is
    two jobs that want splitting."""
    sizes = {
        _relative(path): len(path.read_text().splitlines())
        for path in _python_files(SOURCE / "worker")
    }
    assert {path: size for path, size in sizes.items() if size > WORKER_MODULE_LIMIT} == {}
    assert len(sizes) > 10  # the walk found the worker's modules
