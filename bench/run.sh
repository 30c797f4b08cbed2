#!/usr/bin/env bash
# Run the benchmark in the project's venv (made by scripts/test), after installing the
# benchmark's own requirements into it.  Arguments go to `python -m bench`.
#   bench/run.sh --quick
#   TASKMILL_BENCH_VENV=/path/to/venv bench/run.sh --runs 10000
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
