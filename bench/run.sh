#!/usr/bin/env bash
# Run the comparative benchmark in the project's venv (made by scripts/test), after installing
# the bench's own requirements into it; each peer gets a venv of its own (.venv/bench-<name>),
# made by the bench. Arguments go to `python -m bench` (see bench/README.md).
#   bench/run.sh --quick
#   TASKMILL_BENCH_VENV=/path/to/venv bench/run.sh --peers pgqueuer,procrastinate
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TASKMILL_BENCH_VENV:-.venv/py313-django61}"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "bench/run.sh: no venv at $venv; create it with scripts/test, or point" \
         "TASKMILL_BENCH_VENV at one with Django 6 (or run: python -m bench)" >&2
    exit 2
fi
"$venv/bin/python" -m pip install --quiet -r bench/requirements.txt
exec "$venv/bin/python" -m bench "$@"
