"""The soak's table: what it did to the system, and what the checker found."""

from __future__ import annotations

COLUMNS = [
    ("database", 10), ("runs", 6), ("kills", 6), ("terms", 6), ("freezes", 8),
    ("restarts", 9), ("cuts", 5), ("cancels", 8), ("stops", 6), ("pauses", 7),
    ("lost", 5), ("doubled", 8), ("missing fires", 14), ("double fires", 13),
    ("stuck", 6), ("wrong", 6), ("limit exceeded", 15), ("slot leaked", 12),
    ("callback missing", 17), ("callback doubled", 17),
]  # fmt: skip


def print_table(vendor, profile, seed, elapsed, report, chaos, producer) -> None:
    counts = chaos.counts
    values = {
        "database": vendor,
        "runs": report.runs,
        **{name: counts[name] for name in ("kills", "terms", "freezes", "restarts", "cuts")},
        **{name: counts[name] for name in ("cancels", "stops", "pauses")},
        "lost": report.lost,
        "doubled": report.doubled,
        "missing fires": report.missing_fires,
        "double fires": report.double_fires,
        "stuck": report.stuck,
        "wrong": report.wrong,
        "limit exceeded": report.limit_exceeded,
        "slot leaked": report.slot_leaked,
        "callback missing": report.callback_missing,
        "callback doubled": report.callback_doubled,
    }
    print()
    print("  ".join(f"{name:>{width}}" for name, width in COLUMNS))
    print("  ".join(f"{values[name]!s:>{width}}" for name, width in COLUMNS))
    print(
        f"soak {vendor} ({profile}, seed {seed}, {elapsed:.0f}s): {report.crashed_runs} runs "
        f"survived a lost attempt (a lost worker, or a database error), {report.gave_up} gave "
        "up after too many lost attempts, "
        f"{producer.ambiguous} enqueues answered by a broken connection were found committed"
    )
    print(flow_summary(report))
    print(
        f"  composition: {report.batches} batches checked ({report.orphan_batches} left empty "
        "by a creation the database cut)"
    )
    if report.flow_exceeded:
        kinds = ", ".join(f"{what} {n}" for what, n in sorted(report.flow_exceeded.items()))
        print(f"  limit exceeded: {kinds}")
    for problem in report.problems[:30]:
        print(f"  {problem}")
    if len(report.problems) > 30:
        print(f"  ... and {len(report.problems) - 30} more")
    verdict = "ok" if report.ok else "FAILED"
    print(f"soak {vendor}: {verdict}", flush=True)


def flow_summary(report) -> str:
    """What the limits met: bodies run, the most at once per limit, how often runs waited."""
    bodies = ", ".join(f"{name} {count}" for name, count in sorted(report.flow_bodies.items()))
    peaks = ", ".join(f"{name} {count}" for name, count in sorted(report.flow_peaks.items()))
    line = (
        f"  flow control: bodies {bodies or 'none'}; most at once: {peaks or '-'}; rated "
        f"starts the gate recorded {sum(report.flow_ledger.values())}, counted at their claim "
        f"(a freeze or a restart delayed them) {report.flow_counted_at_claim}"
    )
    watch = report.watch
    if watch is not None and watch.samples:
        readings = len(watch.samples)
        held = ", ".join(
            f"{kind} in {count * 100 // readings}% (at most {watch.most_held[kind]})"
            for kind, count in sorted(watch.holding.items())
        )
        line += (
            f"; of {readings} readings ({watch.misses} unanswered), runs held back by "
            f"{held or 'nothing'}; the limited queue full in {watch.queue_full}"
        )
    return line
