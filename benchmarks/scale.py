"""Scale: the history run (ingestion, features, labels, archive, one training cycle through the gate)
on synthetic universes of 375, 750, 1,500 and 3,000 names x 20 years, per step.

    .venv/bin/python benchmarks/scale.py [--names 375 750 1500 3000] [--years 20] [--work DIR]

Each universe is built from ``data/us-broad``'s rows that pass every quarantine rule: name j is a
time-shifted copy of a real ticker's OHLCV (``benchmarks.features.build_panel``: its own price and
volume scale, small noise, re-dated onto the last ``--years`` years of the real NYSE calendar), with
the real market series and the source's GICS sector, written as a data folder (``prices.csv``,
``market.csv``, ``sectors.csv``). Every size runs in a fresh process (its memory is its own) what
``stockml run``'s history run runs, through the project's definitions (``benchmarks.breadth``'s per-step
wall time and peak resident memory, sampled every 50 ms). The table prints each step's seconds and
peak GiB per size and the growth per doubling of names (time at 2N / time at N; goal <= 2.2x), with
the run's CPU time and the machine's load. Targets: the 3,000-name run completes within 20 GiB.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GIB = 1024**3
BROAD = ROOT / "data" / "us-broad"
TARGET_GROWTH = 2.2
TARGET_PEAK_GIB = 20.0


def build_folder(folder: Path, names: int, years: int) -> dict:
    """Write a synthetic ``names`` x ``years`` data folder from us-broad's good rows; return its shape."""
    import pandas as pd

    from benchmarks.features import build_panel
    from stockml_core.market import quality
    from stockml_core.market.data import load_prices, load_universe
    from stockml_core.settings import QualitySettings

    prices, _ = load_prices(BROAD)
    universe = load_universe(BROAD)
    good = quality.screen_prices(prices, universe.ticker, pd.Timestamp.now().normalize(), QualitySettings()).good
    panel, sectors = build_panel(good, universe[["ticker", "gics_sector"]], names, years)
    del prices, good
    folder.mkdir(parents=True, exist_ok=True)
    step = 1_000_000  # written in slices: the text of 15M rows at once would take gigabytes
    for i in range(0, len(panel), step):
        panel.iloc[i : i + step].to_csv(
            folder / "prices.csv", index=False, float_format="%.6g", date_format="%Y-%m-%d", mode="w" if i == 0 else "a", header=i == 0
        )
    sectors.assign(name=sectors.ticker)[["ticker", "name", "gics_sector"]].to_csv(folder / "sectors.csv", index=False)
    (folder / "market.csv.gz").write_bytes((BROAD / "market.csv.gz").read_bytes())
    return {"rows": len(panel), "names": names, "first": f"{panel.date.min():%Y-%m-%d}", "last": f"{panel.date.max():%Y-%m-%d}"}


def run_one(names: int, years: int, work: Path) -> dict:
    """Run the history job on the built folder in this process; return per-step seconds and peaks."""
    base = work / f"n{names}"
    shape = json.loads((base / "shape.json").read_text())
    os.environ.update(
        {
            "STOCKML_DATA_DIR": str(base / "data"),
            "STOCKML_HOME": str(base / "home"),
            "DAGSTER_HOME": str(base / "dagster_home"),
            "STOCKML_AUTOMATION": "off",
        }
    )
    import gc
    import logging

    from dagster import DagsterInstance

    from benchmarks.breadth import StepMemory, rss
    from stockml_assets.cli import init_home
    from stockml_assets.definitions import defs
    from stockml_assets.runs import data_span, failure_messages, run_history
    from stockml_core.settings import Settings

    gc.collect()
    init_home()
    start_rss = rss()
    mem = StepMemory()
    logging.getLogger("stockml.progress").addHandler(mem)
    first, last = data_span(Settings())
    load0 = os.getloadavg()[0]
    with DagsterInstance.get() as instance:
        c0, t0 = os.times(), time.perf_counter()
        result = run_history(defs, instance, first, last, run_config={"loggers": {"progress": {}}})
        wall, c1 = time.perf_counter() - t0, os.times()
    return {
        **shape,
        "success": bool(result.success),
        "failures": [] if result.success else failure_messages(result),
        "wall": wall,
        "cpu": (c1.user - c0.user) + (c1.system - c0.system),
        "load_start": load0,
        "load_end": os.getloadavg()[0],
        "rss_before_gib": start_rss / GIB,
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
        "steps": {k: {"seconds": v, "peak_gib": mem.peak.get(k, 0) / GIB, "start_gib": mem.at_start.get(k, 0) / GIB} for k, v in mem.seconds.items()},
    }


def table(results: list[dict]) -> str:
    """Per step: seconds and peak GiB per size, and the growth of the time per doubling of names."""
    steps = sorted({s for r in results for s in r["steps"]}, key=lambda s: -max(r["steps"].get(s, {}).get("seconds", 0) for r in results))
    head = "| step | " + " | ".join(f"{r['names']:,} names: s / GiB" for r in results) + " | growth per doubling (time) |"
    lines = [head, "|" + "---|" * (len(results) + 2)]
    for step in steps:
        cells, growth = [], []
        for i, r in enumerate(results):
            v = r["steps"].get(step)
            cells.append(f"{v['seconds']:.1f} / {v['peak_gib']:.2f}" if v else "-")
            prev = results[i - 1]["steps"].get(step) if i else None
            if v and prev and results[i - 1]["names"] * 2 == r["names"] and prev["seconds"] >= 1.0:
                growth.append(v["seconds"] / prev["seconds"])
        if max((r["steps"].get(step, {}).get("seconds", 0) for r in results), default=0) < 1.0:
            continue
        lines.append(f"| {step} | " + " | ".join(cells) + " | " + (", ".join(f"{g:.2f}x" for g in growth) or "-") + " |")
    total = [f"{r['wall']:.0f} s, {r['cpu']:.0f} s CPU, peak {r['peak_gib']:.2f} GiB" for r in results]
    lines.append(
        "| **history run** | "
        + " | ".join(total)
        + " | "
        + ", ".join(f"{b['wall'] / a['wall']:.2f}x" for a, b in zip(results, results[1:], strict=False) if a["names"] * 2 == b["names"])
        + " |"
    )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, nargs="*", default=[375, 750, 1500, 3000])
    ap.add_argument("--years", type=int, default=20)
    ap.add_argument("--work", type=Path, default=None, help="folder for the data and state (default: a new temporary one)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child: one size's run ...
    ap.add_argument("--build", type=int, default=None, help=argparse.SUPPRESS)  # ... or its data folder
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="stockml-scale-"))
    if a.build is not None:  # in a process of its own: the run's memory is the run's
        shape = build_folder(work / f"n{a.build}" / "data", a.build, a.years)
        (work / f"n{a.build}" / "shape.json").write_text(json.dumps(shape))
        return 0
    if a.one is not None:
        out = run_one(a.one, a.years, work)
        (work / f"n{a.one}" / "result.json").write_text(json.dumps(out, indent=1))
        return 0 if out["success"] else 1
    print(f"scale benchmark in {work}: {a.names} names x {a.years} years; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    results = []
    for n in a.names:
        t = time.perf_counter()
        for role in ("--build", "--one"):
            proc = subprocess.run(
                [sys.executable, __file__, role, str(n), "--years", str(a.years), "--work", str(work)], capture_output=True, text=True
            )
            if proc.returncode and role == "--build":
                break
        path = work / f"n{n}" / "result.json"
        if not path.exists():
            print(f"{n} names: the run did not finish (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
            break
        r = json.loads(path.read_text())
        results.append(r)
        status = "ok" if r["success"] else f"FAILED: {r['failures']}"
        print(
            f"{n:,} names ({r['rows']:,} rows, {r['first']}..{r['last']}): history run {r['wall']:.0f} s, "
            f"{r['cpu']:.0f} s CPU, peak {r['peak_gib']:.2f} GiB, load {r['load_start']:.2f} -> {r['load_end']:.2f}; "
            f"{time.perf_counter() - t:.0f} s with the data build; {status}",
            flush=True,
        )
        if not r["success"]:
            break
    if results:
        print("\n" + table(results))
        worst = [
            (s, r["names"], r["steps"][s]["seconds"] / p["steps"][s]["seconds"])
            for p, r in zip(results, results[1:], strict=False)
            if p["names"] * 2 == r["names"]
            for s in r["steps"]
            if s in p["steps"] and p["steps"][s]["seconds"] >= 5.0
        ]
        over = [w for w in worst if w[2] > TARGET_GROWTH]
        print(
            f"\nsteps of >= 5 s growing more than {TARGET_GROWTH}x per doubling: "
            + (", ".join(f"{s} to {n:,} names {g:.2f}x" for s, n, g in over) or "none")
        )
        big = results[-1]
        verdict = (
            ("met" if big["peak_gib"] <= TARGET_PEAK_GIB and big["success"] else "NOT met")
            if big["names"] >= 3000
            else "not measured (no 3,000-name run)"
        )
        print(
            f"largest run: {big['names']:,} names, peak {big['peak_gib']:.2f} GiB, "
            f"{big['peak_gib'] * 2**30 / big['rows'] / 1e3:.1f} KB per price row (target <= {TARGET_PEAK_GIB:g} GiB at 3,000 names): {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
