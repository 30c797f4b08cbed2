"""The printed report: one table of figures x systems, then taskmill's own figures."""

from __future__ import annotations

import statistics
from typing import Any

from .systems import OURS, SYSTEMS, System

Cell = dict[str, Any]

# (key, label, kind) - kind "rate" (higher is better) or "ms"/"mb" (lower is better)
ROWS: tuple[tuple[str, str, str], ...] = (
    ("enqueue", "enqueue one by one (jobs/s)", "rate"),
    ("bulk", "bulk enqueue (jobs/s)", "rate"),
    ("drain_c1", "drain, concurrency 1 (jobs/s)", "rate"),
    ("drain_c2", "drain, concurrency 2 (jobs/s)", "rate"),
    ("tuned_c1", "drain c=1, tuned setting (jobs/s)", "rate"),
    ("lat_p50", "enqueue->start p50 (ms)", "ms"),
    ("lat_p95", "enqueue->start p95 (ms)", "ms"),
    ("lat_tuned_p50", "enqueue->start p50, tuned (ms)", "ms"),
    ("lat_tuned_p95", "enqueue->start p95, tuned (ms)", "ms"),
    ("rss", "worker peak RSS, drain c=1 (MB)", "mb"),
)


def med(cell: Cell | None) -> float | None:
    if not cell or not cell.get("values"):
        return None
    return statistics.median(cell["values"])


def short(value: float, kind: str) -> str:
    if kind == "rate":
        return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fmt(cell: Cell | None, kind: str) -> tuple[str, str]:
    """The cell's median, and its spread (min-max) for the line below."""
    if cell is None:
        return "-", ""
    if "error" in cell:
        return "error", ""
    if "na" in cell:
        return "n/a", ""
    values = cell["values"]
    m = statistics.median(values)
    text = f"{m:,.0f}" if kind == "rate" or m >= 100 else f"{m:.1f}"
    if cell.get("incomplete"):
        text += "*"
    spread = f"{short(min(values), kind)}-{short(max(values), kind)}" if len(values) > 1 else ""
    return text, spread


def cell_of(results: dict[str, dict[str, Cell]], system: str, key: str) -> Cell | None:
    cells = results.get(system, {})
    if "*" in cells:
        return cells["*"]
    return cells.get(key)


def best_peer(
    results: dict[str, dict[str, Cell]], key: str, kind: str, peers: list[System]
) -> tuple[float | None, str]:
    """The best peer's value for this figure, counting its tuned line where it has one."""
    keys = [key]
    if key == "drain_c1":
        keys.append("tuned_c1")
    if key in ("lat_p50", "lat_p95"):
        keys.append(key.replace("lat_", "lat_tuned_"))
    best: tuple[float | None, str] = (None, "")
    for peer in peers:
        for k in keys:
            value = med(cell_of(results, peer.name, k))
            if value is None:
                continue
            current = best[0]
            if current is None or (value > current if kind == "rate" else value < current):
                best = (value, peer.name)
    return best


def goal(
    key: str, tm: float | None, results: dict[str, dict[str, Cell]], best: float | None
) -> str:
    if tm is None:
        return ""
    if key == "enqueue" and best:
        return f">=1x best DB: {'met' if tm >= best else 'NOT met'}"
    if key == "bulk":
        pgq = med(cell_of(results, "pgqueuer", "bulk"))
        if pgq:
            return f">=1.2x pgqueuer ({tm / pgq:.2f}x): {'met' if tm >= 1.2 * pgq else 'NOT met'}"
    if key == "drain_c1" and best:
        return f">=2x best DB: {'met' if tm >= 2 * best else 'NOT met'}"
    if key in ("lat_p50", "lat_p95"):
        limit = 2.0 if key == "lat_p50" else 4.0
        every = [
            med(cell_of(results, s.name, k))
            for s in SYSTEMS
            if s not in OURS
            for k in (key, key.replace("lat_", "lat_tuned_"))
        ]
        every = [v for v in every if v is not None]
        ok = tm <= limit and all(tm < v for v in every)
        return f"<={limit:.0f} ms, < every peer: {'met' if ok else 'NOT met'}"
    return ""


def table(rows: list[list[str]], right_from: int = 1) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        cols = [
            r[i].ljust(widths[i]) if i < right_from or i == len(r) - 1 else r[i].rjust(widths[i])
            for i in range(len(r))
        ]
        out.append("  ".join(cols).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main_table(results: dict[str, dict[str, Cell]], systems: list[System]) -> str:
    db_peers = [s for s in systems if s.backend == "pg" and s not in OURS]
    header = ["figure", *[s.name + ("*" if s.backend == "redis" else "") for s in systems]]
    header += ["best DB peer", "taskmill/best", "goal"]
    rows = [header]
    for key, label, kind in ROWS:
        if not any(cell_of(results, s.name, key) for s in systems):
            continue
        values, spreads = [], []
        for s in systems:
            text, spread = fmt(cell_of(results, s.name, key), kind)
            values.append(text)
            spreads.append(spread)
        tm = med(cell_of(results, "taskmill", key))
        best, who = best_peer(results, key, kind, db_peers)
        if key.startswith(("lat_tuned", "tuned")) or kind == "mb":
            best_text, ratio = "", ""
        else:
            best_text = f"{short(best, kind)} {who}" if best is not None else "-"
            ratio = f"{tm / best:.2f}x" if tm and best else "-"
        rows.append([label, *values, best_text, ratio, goal(key, tm, results, best)])
        if any(spreads):
            rows.append(["  spread (min-max)", *spreads, "", "", ""])
    return table(rows) if len(rows) > 1 else ""


def variants_report(results: dict[str, dict[str, Cell]], systems: list[System]) -> str:
    """Each way of running a peer's worker that was measured, the fastest marked."""
    out: list[str] = []
    for s in systems:
        cells = results.get(s.name, {})
        names = [k.removeprefix("variant:") for k in cells if k.startswith("variant:")]
        if not names:
            continue
        fastest = cells.get("tuned_c1", {}).get("variant")
        tm = med(cell_of(results, "taskmill", "drain_c1"))
        header = ["variant", "drain c=1 (jobs/s)", "spread (min-max)", "taskmill c=1 / it"]
        rows = [[*header, "peak RSS", ""]]
        for name in names:
            cell = cells[f"variant:{name}"]
            text, spread = fmt(cell, "rate")
            m = med(cell)
            ratio = f"{tm / m:.2f}x" if tm and m else "-"
            note = "the tuned line (fastest)" if name == fastest else ""
            if name in s.limited:
                note = "per-entrypoint limit: not a candidate"
            rss = f"{cell['peak_rss_mb']:.1f} MB" if "peak_rss_mb" in cell else ""
            rows.append([name, text, spread, ratio, rss, note])
        out += [f"{s.name}: each way of running its worker, drained at c=1:", table(rows), ""]
    return "\n".join(out)


def errors(results: dict[str, dict[str, Cell]]) -> list[str]:
    lines = []
    for system, cells in results.items():
        for key, cell in cells.items():
            if "error" in cell:
                lines.append(f"  {system} / {key}: {cell['error'][:300]}")
    return lines


def extras_report(extras: dict[str, Any], results: dict[str, dict[str, Cell]]) -> str:
    out: list[str] = []
    raw = extras.get("raw", {})
    engines = extras.get("engines", {})
    if raw or engines:
        rows = [["engine", "raw limit (jobs/s)", "taskmill drain c=1", "taskmill / raw", "goal"]]
        tm_pg = cell_of(results, "taskmill", "drain_c1")
        for engine in ("postgresql", "mysql", "sqlite"):
            tm_cell = tm_pg if engine == "postgresql" else engines.get(engine, {}).get("drain_c1")
            r_text, _ = fmt(raw.get(engine), "rate")
            t_text, _ = fmt(tm_cell, "rate")
            r, t = med(raw.get(engine)), med(tm_cell)
            share = f"{t / r:.0%}" if r and t else "-"
            verdict = (">=40%: " + ("met" if t / r >= 0.4 else "NOT met")) if r and t else ""
            name = {"mysql": "MariaDB", "sqlite": "SQLite (WAL)"}.get(engine, "PostgreSQL")
            rows.append([name, r_text, t_text, share, verdict])
        out += [
            "taskmill against the raw limit of each database (one process, batches of 100):",
            table(rows),
            "",
        ]
    drift = extras.get("rss_drift")
    if drift:
        if "error" in drift:
            out += [f"taskmill worker RSS drift: error: {drift['error'][:300]}", ""]
        else:
            (small, a), (big, b) = sorted(((int(k), v) for k, v in drift.items()))
            change = (b - a) / a
            out += [
                f"taskmill worker RSS after {small:,} tasks: {a:.1f} MB; after {big:,}: {b:.1f} MB "
                f"({change:+.1%}; goal within 10%: {'met' if abs(change) <= 0.10 else 'NOT met'})",
                "",
            ]
    procs = extras.get("processes")
    if procs is not None:
        out.append("taskmill worker --processes (every core):")
        if "error" in procs:
            out.append(f"  error: {procs['error'][:300]}")
        else:
            if procs.get("has_processes"):
                p1, p2 = med(procs.get("cpu_p1")), med(procs.get("cpu_p2"))
                if p1 and p2:
                    out.append(
                        f"  10 ms CPU-bound tasks: --processes 1 {p1:,.0f}/s, --processes 2 "
                        f"{p2:,.0f}/s: {p2 / p1:.2f}x (goal >= 1.7x: "
                        f"{'met' if p2 / p1 >= 1.7 else 'NOT met'})"
                    )
            else:
                out.append("  10 ms CPU-bound tasks, 1 vs 2 processes: n/a (no --processes)")
            s = med(procs.get("sleep_c4"))
            if s:
                out.append(
                    f"  10 ms sleeping tasks at --concurrency 4: {s:,.0f}/s, {s / 400:.0%} of the "
                    f"ideal 400/s (goal >= 90%: {'met' if s >= 360 else 'NOT met'})"
                )
        out.append("")
    return "\n".join(out)


def settings_lines(systems: list[System]) -> list[str]:
    lines = []
    for s in systems:
        lines.append(f"  {s.name}: {s.settings}" + (f"; tuned: {s.tuned}" if s.tuned else ""))
    return lines
