"""Check that a copy of the demo project runs on the taskmill a wheel installed, whole.

    cd COPY_OF_EXAMPLE && VENV/bin/python check_installed.py REPO_ROOT

scripts/check-release copies this file into a temporary copy of example/ and runs it with the
fresh venv the release's wheel went into: the project's own directory is on sys.path (as
manage.py puts it), the checkout is not, so `import taskmill` can only find the installed
package. Then every template and static file of that package must be what Django's loaders
find, and its migrations must describe its models. Exits 0 with one line, or 1 with the
problems.
"""

import os
import re
import sys
import sysconfig
from pathlib import Path

# As manage.py does; the imports below need the settings, hence django.setup() first.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")

import django

django.setup()

from django.contrib.staticfiles import finders  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.template.loader import get_template  # noqa: E402

import taskmill  # noqa: E402


def main(repo: Path) -> int:
    problems = []
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    package = Path(taskmill.__file__).resolve().parent
    if not package.is_relative_to(site):
        problems.append(f"taskmill was imported from {package}, not from {site}")
    if package.is_relative_to(repo):
        problems.append(f"taskmill was imported from the checkout ({package})")
    on_path = [entry for entry in sys.path if entry and Path(entry).resolve() == repo]
    if on_path:
        problems.append(f"the checkout {repo} is on sys.path")

    # Each template compiles (its {% load %} finds taskmill's template tags) and is the
    # installed file, not one a loader found elsewhere.
    templates = sorted((package / "templates").rglob("*.html"))
    for path in templates:
        name = path.relative_to(package / "templates").as_posix()
        origin = Path(get_template(name).origin.name).resolve()
        if origin != path:
            problems.append(f"template {name} resolves to {origin}, not {path}")
    statics = sorted(p for p in (package / "static").rglob("*") if p.is_file())
    for path in statics:
        name = path.relative_to(package / "static").as_posix()
        found = finders.find(name)
        if found is None or Path(found).resolve() != path:
            problems.append(f"static file {name} resolves to {found}, not {path}")
    if not templates or not statics:
        problems.append(f"{package} has {len(templates)} templates, {len(statics)} static files")

    migrations = sorted(p.name for p in (package / "migrations").glob("*.py"))
    migrations = [name for name in migrations if re.match(r"\d{4}_\w+\.py$", name)]
    if not migrations:
        problems.append(f"{package / 'migrations'} holds no migration")
    try:
        # Exits 1 when the installed models need a migration the wheel does not ship.
        call_command("makemigrations", "taskmill", check=True, dry_run=True, verbosity=0)
    except SystemExit as stop:
        if stop.code:
            problems.append("the installed models need a migration the wheel does not hold")

    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"installed taskmill {package}: {len(templates)} templates and {len(statics)} static "
        f"files found there by Django, {len(migrations)} migrations matching its models"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]).resolve()))
