"""Drive every figure for every system through its adapter; a failure becomes a cell."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from .limits import LIMITED, limits_cells
from .orchestrate import PeerError, Session, log
from .rawlimit import raw_limit
from .systems import TASKMILL, System

# A cell: {"values": [...], "incomplete": bool} | {"na": reason} | {"error": message}
Cell = dict[str, Any]


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def attempt(label: str, fn: Any) -> Any:
    try:
        return fn()
    except PeerError as exc:
        log(f"  {label}: error: {exc}")
        return {"error": str(exc)}


def drain_cells(result: dict[str, Any], prefix: str) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for c, entry in result.items():
        key = f"{prefix}_c{c}"
        if "na" in entry:
            cells[key] = {"na": entry["na"]}
            continue
        runs = entry["runs"]
        cells[key] = {
            "values": [r["rate"] for r in runs],
            "incomplete": not all(r["complete"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        }
    return cells


def latency_cells(result: dict[str, Any], prefix: str) -> dict[str, Cell]:
    rounds = result["rounds"]
    return {
        f"{prefix}_p50": {"values": [pct(r, 50) for r in rounds]},
        f"{prefix}_p95": {"values": [pct(r, 95) for r in rounds]},
    }


def drain_params(args: argparse.Namespace, variant: str, concurrency: list[int]) -> dict:
    return {
        "n": args.n,
        "repeat": args.repeat,
        "concurrency": concurrency,
        "variant": variant,
        "budget": args.budget,
    }


def variant_cells(s: Session, system: System, args: argparse.Namespace) -> dict[str, Cell]:
    """Each variant drained at c=1 (`variant:<name>`), and the fastest as the tuned line."""
    cells: dict[str, Cell] = {}
    for variant in system.variants + system.limited:
        log(f"  drain ({variant})")
        r = attempt("drain", lambda v=variant: s.call("drain", drain_params(args, v, [1])))
        cells[f"variant:{variant}"] = r if "error" in r else drain_cells(r, "v")["v_c1"]
    measured = [(median(cells[f"variant:{v}"]), v) for v in system.variants]
    measured = [(m, v) for m, v in measured if m is not None]
    if measured:
        fastest = max(measured)[1]
        cells["tuned_c1"] = cells[f"variant:{fastest}"] | {"variant": fastest}
    else:
        cells["tuned_c1"] = {"error": "no variant measured"}
    return cells


def measure_system(system: System, args: argparse.Namespace, only: set[str]) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    began = time.monotonic()
    log(f"[{system.name}]")
    try:
        session = Session(system)
    except PeerError as exc:
        log(f"  error: {exc}")
        return {"*": {"error": str(exc)}}
    try:
        with session as s:
            if "enqueue" in only:
                log("  enqueue one by one")
                r = attempt(
                    "enqueue",
                    lambda: s.call("enqueue", {"n": args.enqueue_n, "repeat": args.repeat}),
                )
                cells["enqueue"] = r if isinstance(r, dict) else {"values": r}
            if "bulk" in only:
                log("  bulk enqueue")
                r = attempt("bulk", lambda: s.call("bulk", {"n": args.n, "repeat": args.repeat}))
                if r is None:
                    cells["bulk"] = {"na": "no bulk enqueue API"}
                else:
                    cells["bulk"] = r if isinstance(r, dict) else {"values": r}
            variants = [("drain", "default")] + ([("tuned", "tuned")] if system.tuned else [])
            if system.variants:  # the tuned line is the fastest variant, measured below
                variants = variants[:1]
            if "drain" in only:
                for prefix, variant in variants:
                    log(f"  drain ({variant})")
                    conc = [1, 2] if variant == "default" else [1]
                    r = attempt(
                        "drain", lambda v=variant, c=conc: s.call("drain", drain_params(args, v, c))
                    )
                    if "error" in r:
                        for c in conc:
                            cells[f"{prefix}_c{c}"] = r
                    else:
                        cells.update(drain_cells(r, prefix))
                if system.variants:
                    cells.update(variant_cells(s, system, args))
                c1 = cells.get("drain_c1", {})
                if "peak_rss_mb" in c1:
                    cells["rss"] = {"values": [c1["peak_rss_mb"]]}
            if "latency" in only:
                if system.variants:  # the fastest drain's variant, else the default's worker
                    variants.append(("tuned", cells.get("tuned_c1", {}).get("variant", "tuned")))
                for prefix, variant in [
                    ("lat", v[1]) if v[0] == "drain" else ("lat_tuned", v[1]) for v in variants
                ]:
                    log(f"  latency ({variant})")
                    params = {
                        "m": args.latency_m,
                        "repeat": args.repeat,
                        "variant": variant,
                        "gap_ms": args.gap_ms,
                    }
                    r = attempt("latency", lambda p=params: s.call("latency", p))
                    if "error" in r:
                        cells[f"{prefix}_p50"] = cells[f"{prefix}_p95"] = r
                    else:
                        cells.update(latency_cells(r, prefix))
            if "limits" in only and system.name in LIMITED:
                cells.update(limits_cells(s, system, args))
    except PeerError as exc:  # set-up failed
        log(f"  error: {exc}")
        cells["*"] = {"error": str(exc)}
    except KeyboardInterrupt:
        raise
    log(f"  ({time.monotonic() - began:.0f}s)")
    return cells


def taskmill_extras(args: argparse.Namespace, only: set[str]) -> dict[str, Any]:
    """Raw limits, taskmill on MariaDB and SQLite, its RSS drift and --processes figures."""
    out: dict[str, Any] = {"raw": {}, "engines": {}, "rss_drift": None, "processes": None}
    if "raw" in only:
        for engine in ("postgresql", "mysql", "sqlite"):
            log(f"[raw limit: {engine}]")
            try:
                out["raw"][engine] = {"values": raw_limit(engine, args.raw_n, args.repeat)}
            except Exception as exc:  # a missing server or driver: say so, go on
                out["raw"][engine] = {"error": f"{type(exc).__name__}: {exc}"}
    if "engines" in only:
        for engine in ("mysql", "sqlite"):
            log(f"[taskmill on {engine}]")
            params = {
                "n": args.n,
                "repeat": args.repeat,
                "concurrency": [1],
                "variant": "default",
                "budget": args.budget,
            }
            try:
                with Session(TASKMILL, engine=engine) as s:
                    out["engines"][engine] = drain_cells(s.call("drain", params), "drain")
            except PeerError as exc:
                out["engines"][engine] = {"drain_c1": {"error": str(exc)}}
    if "rss" in only:
        log(f"[taskmill RSS after {args.rss_small:,} and {args.rss_big:,} tasks]")
        try:
            with Session(TASKMILL) as s:
                out["rss_drift"] = s.call(
                    "rss", {"small": args.rss_small, "big": args.rss_big, "variant": "default"}
                )
        except PeerError as exc:
            out["rss_drift"] = {"error": str(exc)}
    if "processes" in only:
        out["processes"] = processes_figures(args)
    return out


def processes_figures(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        with Session(TASKMILL) as s:
            has = s.call("has_processes", {})
            out["has_processes"] = has
            log("[taskmill: 10 ms sleeping tasks at --concurrency 4]")
            sleep = s.call(
                "drain",
                {
                    "n": args.sleep_n,
                    "repeat": args.repeat,
                    "concurrency": [4],
                    "variant": "default",
                    "budget": args.budget,
                    "kind": "sleep",
                },
            )
            out["sleep_c4"] = drain_cells(sleep, "sleep")["sleep_c4"]
            if has:
                for p in (1, 2):
                    log(f"[taskmill: 10 ms CPU-bound tasks, --processes {p}]")
                    r = s.call(
                        "drain",
                        {
                            "n": args.cpu_n,
                            "repeat": args.repeat,
                            "concurrency": [1],
                            "variant": f"processes{p}",
                            "budget": args.budget,
                            "kind": "cpu",
                        },
                    )
                    out[f"cpu_p{p}"] = drain_cells(r, "cpu")["cpu_c1"]
    except PeerError as exc:
        out["error"] = str(exc)
    return out


def median(cell: Cell) -> float | None:
    values = cell.get("values")
    return statistics.median(values) if values else None
