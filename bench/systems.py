"""The systems compared: where each one's adapter lives, what it installs, how it is set up."""

from __future__ import annotations

from dataclasses import dataclass, field

PY313 = "/root/.pyenv/versions/3.13.0/bin/python"
PY312 = "/root/.pyenv/versions/3.12.1/bin/python"
PSYCOPG = "psycopg[binary]==3.3.*"


@dataclass(frozen=True)
class System:
    name: str
    adapter: str  # module in bench/peers/
    backend: str  # "pg" (a database of its own on the PostgreSQL server) or "redis"
    requirements: tuple[str, ...] = ()  # pinned, installed in .venv/bench-<name>
    python: str = PY313
    own_venv: bool = True  # taskmill runs in the project's venv, from the work tree
    # settings used, printed under the table
    settings: str = ""
    # a second line for drain/latency at a tuned setting, where the default is a slow poll
    tuned: str = ""
    # ways to run its worker without a limit, each drained at c=1: the tuned line is the
    # fastest of them (each one's figure is printed under the table)
    variants: tuple[str, ...] = ()
    # lines with a per-task limit, printed beside the variants, never the tuned line
    limited: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


TASKMILL = System(
    "taskmill",
    "taskmill_adapter",
    "pg",
    own_venv=False,
    settings="`taskmill worker --concurrency C`, its defaults otherwise (LISTEN/NOTIFY, "
    "scheduler on)",
)

# The same, with PostgreSQL binding parameters on the server and psycopg preparing each
# statement from its second use (Django's OPTIONS; off by default in Django, for PgBouncer's
# sake). docs/performance.md: a faster enqueue, at a setting a project chooses.
TASKMILL_PREPARED = System(
    "taskmill-prepared",
    "taskmill_adapter",
    "pg",
    own_venv=False,
    settings="taskmill with DATABASES OPTIONS server_side_binding=True, prepare_threshold=2",
    extra={"BENCH_PG_PREPARED": "1"},
)

SYSTEMS: tuple[System, ...] = (
    TASKMILL,
    TASKMILL_PREPARED,
    System(
        "pgqueuer",
        "pgqueuer_adapter",
        "pg",
        ("pgqueuer==1.6.0", "asyncpg==0.32.*", PSYCOPG),
        settings="what `pgq run` runs (its supervisor `pgqueuer.run(factory)` on uvloop) at its "
        "defaults (asyncpg, batch 10, LISTEN/NOTIFY), async no-op, entrypoint "
        "concurrency_limit = C",
        tuned="no concurrency_limit (its default): the fastest of the variants below",
        # <how>-<driver>-b<batch>[-l<limit>]: bench/peers/pgqueuer_adapter.py says each part
        variants=(
            "cli-asyncpg-b10",
            "cli-psycopg-b10",
            "cli-pool-b10",
            "qm-asyncpg-b10",
            "run-asyncpg-b10",
            "run-psycopg-b10",
            "cli-asyncpg-b100",
            "cli-psycopg-b100",
            "cli-asyncpg-b1000",
        ),
        # the drain lines' limits 1 and 2 with the batch no larger than the limit (at batch 10,
        # an outcome waits for the log buffer's 0.1 s timer), and limits 10 and 100
        limited=(
            "cli-asyncpg-b1-l1",
            "cli-asyncpg-b2-l2",
            "cli-asyncpg-b10-l10",
            "cli-asyncpg-b10-l100",
            "cli-asyncpg-b100-l100",
        ),
    ),
    System(
        "procrastinate",
        "procrastinate_adapter",
        "pg",
        ("procrastinate==3.10.0", PSYCOPG),
        settings="`procrastinate worker --concurrency C` defaults (LISTEN/NOTIFY, 5 s poll "
        "fallback), async no-op",
    ),
    System(
        "oban-py",
        "oban_adapter",
        "pg",
        ("oban==0.7.0", PSYCOPG),
        settings="`oban start --queues default:C` defaults, async no-op, --log-level WARNING",
    ),
    System(
        "django-tasks-db",
        "dtdb_adapter",
        "pg",
        ("django-tasks-db==0.13.0", "Django==6.1.*", PSYCOPG),
        settings="`db_worker` defaults (--interval 1: the wait after an empty poll), "
        "--verbosity 0; one task at a time",
        tuned="--interval 0.01 --no-startup-delay",
    ),
    System(
        "dj-queue",
        "djqueue_adapter",
        "pg",
        ("dj-queue==0.14.2", "Django==6.1.*", PSYCOPG),
        settings="`dj_queue` defaults (fork mode: supervisor + 1 worker process + dispatcher, "
        "0.1 s poll, LISTEN/NOTIFY), threads = C",
    ),
    System(
        "django-q2",
        "djangoq2_adapter",
        "pg",
        ("django-q2==1.11.1", "Django==6.1.*", PSYCOPG),
        settings="`qcluster`, ORM broker, defaults (poll 0.2 s, save_limit 250), workers = C",
        tuned="Q_CLUSTER poll 0.01",
    ),
    System(
        "chancy",
        "chancy_adapter",
        "pg",
        ("chancy[cli]==0.26.0", PSYCOPG),
        settings="`chancy worker start`, queue defaults (ProcessExecutor, NOTIFY + 5 s poll), "
        "concurrency = C",
        tuned="queue polling_interval 0",
    ),
    System(
        "huey",
        "huey_adapter",
        "redis",
        ("huey==3.5.4", "redis==8.*"),
        settings="`huey_consumer -w C` defaults (threads, blocking BRPOP)",
    ),
    System(
        "celery",
        "celery_adapter",
        "redis",
        ("celery[redis]==5.7.0", "redis==8.*"),
        settings="`celery worker --concurrency C` defaults (prefork, prefetch x4), no results",
    ),
    System(
        "rq",
        "rq_adapter",
        "redis",
        ("rq==2.12.0",),
        settings="`rq worker` defaults (a fork per job); one job at a time",
        tuned="--worker-class rq.worker.SimpleWorker (no fork)",
    ),
)

BY_NAME = {s.name: s for s in SYSTEMS}
# taskmill's own columns: never its own peer.
OURS = (TASKMILL, TASKMILL_PREPARED)
