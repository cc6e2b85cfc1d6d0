"""``python -m bench [--quick] [--out bench/results/latest.json] [--only SECTION[,SECTION]]``.

Runs the sections in order, prints a table with every headline figure next to its target
(PASS/MISS), writes the results file and a chart. A section that fails is recorded with its
error and the run goes on; the exit code is then 1. Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import orjson

from bench import report
from bench.common import Context, machine_info

SECTIONS = ("universes", "valuation", "ingest", "end_to_end", "cycle", "memory", "replay", "realtime", "journal",
            "cluster")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def _section(name: str):
    """The section's ``run(ctx) -> dict`` (imported lazily: each pulls in its own dependencies)."""
    if name == "universes":
        return run_universes
    module = __import__(f"bench.{name}", fromlist=["run"])
    return module.run


def run_universes(ctx: Context) -> dict:
    from bench import universes as U
    check = U.check_direct_layout()
    ctx.universe("demo")
    ctx.universe("us")
    return {"universes": {"layout_check": check}}


def _git() -> dict:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "iopv"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return {"commit": commit or None, "iopv_uncommitted_changes": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, no global scale (< 60 s)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results JSON (a PNG chart goes next to it)")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}; results are "
                                       "merged into an existing --out file")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    args = parser.parse_args(argv)
    chosen = list(SECTIONS)
    if args.only:
        chosen = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in SECTIONS]
        if unknown:
            parser.error(f"unknown section(s) {', '.join(unknown)} (known: {', '.join(SECTIONS)})")

    out_path = Path(args.out)
    results: dict = {}
    if args.only and out_path.is_file():
        results = orjson.loads(out_path.read_bytes())
    ctx = Context(quick=args.quick)
    started = time.perf_counter()
    meta = results.get("meta", {})
    meta.update({
        "started_at": _now(),
        "mode": "quick" if args.quick else "full",
        "argv": sys.argv[1:] if argv is None else argv,
        "seeds": ctx.seeds,
        "machine": machine_info(),
        "git": _git(),
    })
    sections_meta = meta.setdefault("sections", {})
    results["meta"] = meta
    failed = []
    print(f"iopv benchmark, {meta['mode']} mode, sections: {', '.join(chosen)}", flush=True)
    try:
        for name in chosen:
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            print(f"  {name} ...", end="", flush=True)
            try:
                results.update(_section(name)(ctx))
                status = "ok"
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                status = "error"
                failed.append(name)
                results[name] = {"error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc()[-4000:]}
            elapsed = time.perf_counter() - t0
            sections_meta[name] = {"status": status, "seconds": round(elapsed, 2), "mode": meta["mode"],
                                   "finished_at": _now(), "loadavg_1m_before": load_before,
                                   "loadavg_1m_after": os.getloadavg()[0]}
            print(f" {status} ({elapsed:.1f} s)", flush=True)
            if status == "error":
                print("    " + results[name]["error"].splitlines()[0][:300], flush=True)
        if ctx.universe_rows:
            rows = {row["scale"]: row for row in results.get("universes", {}).get("scales", [])}
            rows.update({row["scale"]: row for row in ctx.universe_rows})
            results.setdefault("universes", {})
            if isinstance(results["universes"], dict) and "error" not in results["universes"]:
                results["universes"]["scales"] = list(rows.values())
    finally:
        ctx.close()
    meta["finished_at"] = _now()
    meta["duration_s"] = round(time.perf_counter() - started, 1)
    results["targets"] = report.targets(results)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print()
    print(report.render(results))
    if not args.no_chart:
        try:
            from bench import chart
            png = chart.draw(results, out_path.with_suffix(".png"))
            print(f"\nresults: {out_path}\nchart:   {png}")
        except Exception as exc:  # noqa: BLE001 - a chart failure must not lose the results
            print(f"\nresults: {out_path}\nchart failed: {type(exc).__name__}: {exc}")
    else:
        print(f"\nresults: {out_path}")
    if failed:
        print(f"sections with errors: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
