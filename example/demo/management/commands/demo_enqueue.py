"""``demo_enqueue``: keep enqueueing a mix of the demo tasks so the worker has work."""

import itertools
import random
import signal
import threading
from datetime import timedelta

from django.core.management.base import BaseCommand

import taskmill
from demo import tasks

NAMES = ["Ada", "Grace", "Linus", "Margaret", "Guido", "Barbara", "Ken", "Radia"]
REPORTS = ["sales", "signups", "churn", "inventory"]
SITES = ["https://www.djangoproject.com/", "https://example.com/", "https://pypi.org/"]


class Command(BaseCommand):
    help = "Enqueue a mix of demo tasks every INTERVAL seconds until stopped (or once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Enqueue one round and exit.")
        parser.add_argument(
            "--interval",
            type=float,
            default=1.5,
            metavar="SECONDS",
            help="Pause between rounds (default 1.5).",
        )

    def handle(self, *args, once: bool, interval: float, **options) -> None:
        stop = threading.Event()
        if not once:
            # SIGTERM (from scripts/demo, or `kill`) ends the loop like Ctrl-C does.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
        for round_number in itertools.count(1):
            self.enqueue_round(round_number)
            if once or stop.wait(interval):
                break
        if not once:
            self.stdout.write("Stopped enqueueing.")

    def say(self, text: str) -> None:
        self.stdout.write(text)

    def enqueue_round(self, n: int) -> None:
        name = random.choice(NAMES)
        result = tasks.send_welcome_email.enqueue(f"{name.lower()}@example.com", name)
        self.say(f"[round {n}] send_welcome_email({name!r}) -> run {result.id} ({result.status})")

        # Bulk: one transaction, one multi-row INSERT, one result per call.
        batches = [3 * n - 2, 3 * n - 1, 3 * n]
        results = tasks.import_batch.enqueue_many([((batch,), {}) for batch in batches])
        ids = ", ".join(result.id for result in results)
        self.say(f"[round {n}] import_batch{tuple(batches)} in bulk -> runs {ids} (the last fails)")

        result = tasks.process_upload.enqueue(upload_id=n)
        self.say(f"[round {n}] process_upload(upload_id={n}) -> run {result.id}")

        site = random.choice(SITES)
        result = tasks.check_website.enqueue(site)
        self.say(f"[round {n}] check_website({site!r}) -> run {result.id} (async)")

        # run_after: a timedelta from now (taskmill accepts it) or an aware datetime.
        report = random.choice(REPORTS)
        delay = timedelta(seconds=random.choice([0, 5, 10]))
        result = tasks.rebuild_report.using(run_after=delay).enqueue(report, days=30)
        when = f"in {delay.seconds}s" if delay else "now"
        self.say(f"[round {n}] rebuild_report({report!r}) -> run {result.id} (runs {when})")

        calls = [((f"{name.lower()}@example.com", name), {}) for name in random.sample(NAMES, 3)]
        results = tasks.send_welcome_email.enqueue_many(calls)
        ids = ", ".join(result.id for result in results)
        self.say(f"[round {n}] send_welcome_email x{len(results)} in bulk -> runs {ids}")

        # Flow control: three syncs of one account, which run one after the other.
        account = f"acct-{n % 3}"
        results = tasks.sync_partner_account.enqueue_many([((), {"account": account})] * 3)
        ids = ", ".join(result.id for result in results)
        self.say(f"[round {n}] sync_partner_account({account!r}) x3 -> runs {ids} (one at a time)")

        if n % 5 == 2:
            # taskmill's options: retries with backoff, and a hard timeout.
            result = tasks.flaky_sync.enqueue(n)
            self.say(f"[round {n}] flaky_sync({n}) -> run {result.id} (fails twice, then succeeds)")
            result = tasks.stuck_export.enqueue(n)
            self.say(
                f"[round {n}] stuck_export({n}) -> run {result.id} (killed at its 2 s timeout)"
            )

        # Flow control: a burst of partner calls over their rate now and then.
        if n % 20 == 3:
            tasks.call_partner_api.enqueue_many([((n * 100 + i,), {}) for i in range(12)])
            self.say(f"[round {n}] call_partner_api x12 -> 10 start now, 2 wait for the rate")

        if n % 20 == 1:
            # Metadata travels with the run; the task adds its progress to it as it goes.
            source = {"source": f"catalogue-{n}.csv"}
            result = tasks.import_catalogue.using(metadata=source).enqueue()
            self.say(f"[round {n}] import_catalogue -> run {result.id} (30 s, shows its progress)")

        if n % 10 == 4:
            # A batch: the rows enqueued in the block are its members, and the callback is
            # enqueued once, when the last of them has ended (the admin's Batches page).
            catalogue = f"catalogue-{n}"
            rows = random.randint(24, 48)
            with taskmill.batch(
                on_finish=tasks.catalogue_imported, description=f"import {catalogue}"
            ) as batch:
                tasks.import_catalogue_row.enqueue_many([((catalogue, i), {}) for i in range(rows)])
            self.say(f"[round {n}] batch {batch.id}: {rows} rows of {catalogue}, then a callback")

        if n % 5 == 1:
            # priority=50 is set on the task; .using() could override it per call.
            result = tasks.page_on_call.enqueue(f"disk almost full (round {n})")
            self.say(f"[round {n}] page_on_call -> run {result.id} (priority 50, goes first)")
