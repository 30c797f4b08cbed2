"""Check the sdist and the wheel `python -m build` made, before anything installs them.

    python scripts/check_dists.py DIST_DIR REPO_ROOT

scripts/check-release runs this. A release that ships without its templates, static files or
migrations installs fine and breaks later, in the admin or at `migrate`: so every file of
the package in the checkout must be in the wheel and in the sdist, by name. Prints one line
per archive and exits 0, or lists every problem and exits 1. Standard library only: it runs
with whatever Python made the dists.
"""

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path

PACKAGE = "taskmill"
MIGRATION = re.compile(rf"^{PACKAGE}/migrations/\d{{4}}_\w+\.py$")


def package_files(root: Path) -> set[str]:
    """The files of the package in the checkout, as paths relative to the root: those git
    tracks (a stray file in the working tree is not a release's business), else, outside a
    git checkout (an unpacked sdist), every file but bytecode."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--", PACKAGE],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\0")
        # A tracked file deleted in the working tree is not built: only what is on disk counts.
        return {name for name in listed if name and (root / name).is_file()}
    except (OSError, subprocess.CalledProcessError):
        return {
            path.relative_to(root).as_posix()
            for path in (root / PACKAGE).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        }


def only(directory: Path, pattern: str, problems: list[str]) -> Path | None:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        problems.append(f"expected one {pattern} in {directory}, found {len(found)}: {found}")
        return None
    return found[0]


def check_common(kind: str, names: set[str], prefix: str, expected: set[str]) -> list[str]:
    """What the wheel and the sdist must both hold: every file of the package, the three
    kinds of package data at least once each, and no bytecode."""
    problems = []
    inside = {name.removeprefix(prefix) for name in names if name.startswith(prefix)}
    missing = sorted(expected - inside)
    if missing:
        shown = ", ".join(missing[:20]) + (
            f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        )
        problems.append(f"{kind}: {len(missing)} file(s) of {PACKAGE}/ missing: {shown}")
    for what, test in (
        ("templates", lambda n: n.startswith(f"{PACKAGE}/templates/") and n.endswith(".html")),
        ("static files", lambda n: n.startswith(f"{PACKAGE}/static/")),
        ("migrations", MIGRATION.match),
    ):
        if not any(test(name) for name in inside):
            problems.append(f"{kind}: no {what} under {PACKAGE}/")
    compiled = sorted(n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo")))
    if compiled:
        problems.append(f"{kind}: bytecode shipped: {', '.join(compiled[:5])}")
    return problems


def counts(names: set[str]) -> str:
    templates = sum(n.startswith(f"{PACKAGE}/templates/") for n in names)
    static = sum(n.startswith(f"{PACKAGE}/static/") for n in names)
    migrations = sum(bool(MIGRATION.match(n)) for n in names)
    return f"{templates} templates, {static} static files, {migrations} migrations"


def check_wheel(wheel: Path, stem: str, version: str, expected: set[str]) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"{stem}.dist-info/"
        try:
            metadata = HeaderParser().parsestr(archive.read(f"{info}METADATA").decode())
        except KeyError:
            return [f"{wheel.name}: no {info}METADATA"]
    problems = check_common(wheel.name, names, "", expected)
    stray = sorted(n for n in names if not n.startswith((f"{PACKAGE}/", info)))
    if stray:
        problems.append(
            f"{wheel.name}: files outside {PACKAGE}/ and {info}: {', '.join(stray[:10])}"
        )
    # PEP 639: the SPDX expression and the license file travel in the metadata and the wheel.
    for field, value in (
        ("Version", version),
        ("License-Expression", "BSD-3-Clause"),
        ("License-File", "LICENSE"),
    ):
        if metadata.get(field) != value:
            problems.append(
                f"{wheel.name}: METADATA {field} is {metadata.get(field)!r}, not {value!r}"
            )
    if f"{info}licenses/LICENSE" not in names:
        problems.append(f"{wheel.name}: no {info}licenses/LICENSE")
    if any(c.startswith("License ::") for c in metadata.get_all("Classifier") or []):
        problems.append(f"{wheel.name}: a 'License ::' classifier beside License-Expression")
    if not problems:
        print(f"wheel {wheel.name}: every file of {PACKAGE}/ ({counts(names)}), BSD-3-Clause")
    return problems


def check_sdist(sdist: Path, stem: str, expected: set[str]) -> list[str]:
    with tarfile.open(sdist) as archive:
        names = {member.name for member in archive.getmembers() if member.isfile()}
    top = f"{stem}/"
    problems = check_common(sdist.name, names, top, expected)
    for name in (
        "PKG-INFO",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "docs/index.md",
    ):
        if top + name not in names:
            problems.append(f"{sdist.name}: no {name}")
    tests = sorted(n for n in names if n.startswith(f"{top}tests/"))
    if tests:
        problems.append(
            f"{sdist.name}: part of the test suite is in it ({len(tests)} files, e.g. {tests[0]})"
        )
    if not problems:
        inside = {n.removeprefix(top) for n in names}
        print(
            f"sdist {sdist.name}: every file of {PACKAGE}/ ({counts(inside)}), docs, CHANGELOG.md"
        )
    return problems


def main(dist: Path, root: Path) -> int:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    version = project["version"]
    # The file names' form of the project name (PEP 625, the wheel spec): django_taskmill.
    stem = f"{re.sub(r'[-_.]+', '_', project['name']).lower()}-{version}"
    expected = package_files(root)
    problems: list[str] = []
    if not expected:
        problems.append(f"no files found under {root / PACKAGE}")
    wheel = only(dist, f"{stem}-*.whl", problems)
    sdist = only(dist, f"{stem}.tar.gz", problems)
    if wheel:
        problems += check_wheel(wheel, stem, version, expected)
    if sdist:
        problems += check_sdist(sdist, stem, expected)
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
