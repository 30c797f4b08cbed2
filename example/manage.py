#!/usr/bin/env python
"""The demo project's manage.py; works from anywhere, e.g. ``python example/manage.py``."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent


def main() -> None:
    # The demo project's own modules (demo_project, demo) live next to this file.
    sys.path.insert(0, str(HERE))
    try:
        import taskmill  # noqa: F401
    except ImportError:
        # Not installed: use the checkout this example belongs to.
        sys.path.insert(1, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
