"""Feature-engine benchmark: ``.venv/bin/python benchmarks/features.py [--tickers 500] [--years 20]``.

(a) Against ``ta``: on the whole real sample (every ticker, full history) it times the ``ta`` library
    computing every indicator the registry maps to ``ta`` (``benchmarks.ta_reference.ta_all``, ticker
    by ticker, each ``ta`` object built once), and our engine on the same rows twice: the shared
    indicators (the target's measure: ``compute_features(prices, families=SHARED_FAMILIES)``, every
    family holding a shared indicator, so it computes and returns those families' other features too,
    from the prices alone as ``ta`` does), and the FULL feature set (``compute_features(prices, market,
    sectors)``, market and cross-sectional features included). Our engine is warmed up first (numba
    loads its cached machine code on the first call) and timed best of ``--repeat``, on all numba
    threads and on one (``ta`` is single-threaded Python); ``ta`` is timed once.
(b) Scale: a panel of ``--tickers`` synthetic tickers x ``--years`` years of the sample's real NYSE
    calendar, each a time-shifted copy of a sample ticker's OHLCV with its own price scale, volume
    scale and small deterministic noise (``KO_017``, ...), with the real market series and the
    source's GICS sector. It times the full feature set (after a warm-up on a small slice), and
    reports ticker-days per second and the output's size (``memory_usage(deep=False)``).
(c) Memory: in a fresh ``spawn`` child that builds the same panel, the peak RSS of the computation
    (``ru_maxrss``, with the kernel's high-water mark reset after the build where Linux allows it)
    minus the RSS after building the input, against the output's size.

(d) ``--against TREE``: this engine against another checkout's (a previous version: ``git worktree add
    /tmp/before <rev>``, whose numba cache fills on its first run), each in its own child process,
    alternating for ``--rounds`` rounds on the same panel as (b): the full feature set and one family
    alone, wall and CPU seconds (best of ``--repeat`` in each round, best over rounds), as ratios
    this / that.

Targets printed beside the figures: >= 100x faster than ``ta``; >= 1,000,000 ticker-days/s; peak
memory < 3x the output; against a previous version, no more than 10% slower.
"""

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``benchmarks`` and ``stockml_core`` importable
    sys.path.insert(0, str(ROOT))

from stockml_core.features import FEATURE_NAMES, FEATURE_REGISTRY, compute_features  # noqa: E402
from stockml_core.market.data import load_market, load_prices, load_universe  # noqa: E402

DATA = ROOT / "data" / "sample"
OHLCV = ["open", "high", "low", "close", "volume"]
TARGET_TA_RATIO = 100.0
TARGET_ROWS_PER_S = 1_000_000
TARGET_PEAK_RATIO = 3.0
TARGET_VERSION_RATIO = 1.10
# (d): the cases timed in both engines, (label, families).
VERSION_CASES = (("all features", None), ("returns family alone", ("returns",)))
# (d)'s child: the other checkout's stockml_core first on the path, this file's helpers loaded by path.
_VERSION_CHILD = """
import importlib.util, json, sys
tree, root, tickers, years, repeat = sys.argv[1:]
sys.path.insert(0, tree)
sys.path.append(root)
spec = importlib.util.spec_from_file_location("features_benchmark", root + "/benchmarks/features.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(module.version_timings(int(tickers), int(years), int(repeat))))
"""
# The families of the features that have a ``ta`` equivalent (the registry's ``ta`` field).
SHARED_FAMILIES = tuple(dict.fromkeys(spec.family for spec in FEATURE_REGISTRY if spec.ta))


# ------------------------------------------------------------------------------------------- input


def load_sample() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The real sample: (prices, market, sectors)."""
    prices, _ = load_prices(DATA)
    market, _ = load_market(DATA)
    sectors = load_universe(DATA)[["ticker", "gics_sector"]]
    return prices, market, sectors


def build_panel(prices: pd.DataFrame, sectors: pd.DataFrame, n_tickers: int, years: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n_tickers`` synthetic tickers on the last ``years`` years of the sample's calendar: (prices, sectors).

    Ticker j copies sample ticker ``j mod 33`` from a random offset of its history (tiled, continuing
    the price level, if the history is shorter), re-dated onto the calendar, prices scaled by a random
    factor in [0.2, 5] and by a per-row noise factor exp(N(0, 0.002)) applied to all four prices (so
    high >= open, close >= low still hold), volume scaled by a random factor and noise.
    """
    end = prices["date"].max()
    calendar = np.sort(prices.loc[prices["date"] > end - pd.DateOffset(years=years), "date"].unique())
    n = len(calendar)
    rng = np.random.default_rng(seed)
    by_ticker = {t: g[OHLCV].to_numpy(np.float64) for t, g in prices.groupby("ticker", sort=True)}
    sources = list(by_ticker)
    sector_of = sectors.set_index("ticker")["gics_sector"]
    names = sorted(f"{sources[j % len(sources)]}_{j:03d}" for j in range(n_tickers))  # the (ticker, date) order prices come in
    values = np.empty((n_tickers * n, len(OHLCV)))
    for row, name in enumerate(names):
        src = name.rsplit("_", 1)[0]
        hist = by_ticker[src]
        if len(hist) >= n:
            off = int(rng.integers(0, len(hist) - n + 1))
            path = hist[off : off + n].copy()
        else:  # tile, each copy continuing where the previous one ended
            reps = []
            level = 1.0
            while sum(len(r) for r in reps) < n:
                reps.append(hist * np.array([level] * 4 + [1.0]))
                level *= hist[-1, 3] / hist[0, 3]
            path = np.concatenate(reps)[:n]
        noise = np.exp(rng.normal(0.0, 0.002, n))
        path[:, :4] *= np.exp(rng.uniform(np.log(0.2), np.log(5.0))) * noise[:, None]
        path[:, 4] = np.round(path[:, 4] * rng.uniform(0.5, 2.0) * np.exp(rng.normal(0.0, 0.05, n)))
        values[row * n : (row + 1) * n] = path
    panel = pd.DataFrame(values, columns=OHLCV)
    panel.insert(0, "date", np.tile(calendar, n_tickers))
    panel.insert(0, "ticker", np.repeat(np.array(names, dtype=object), n))
    panel_sectors = pd.DataFrame({"ticker": names, "gics_sector": [sector_of.get(name.rsplit("_", 1)[0]) for name in names]})
    return panel, panel_sectors


def warm_up(prices: pd.DataFrame, market: pd.DataFrame, sectors: pd.DataFrame) -> float:
    """One call on a small slice (numba loads or compiles its kernels); returns its seconds."""
    small = prices[prices["ticker"].isin(prices["ticker"].unique()[:3])].groupby("ticker").head(400)
    start = time.perf_counter()
    compute_features(small, market, sectors)
    return time.perf_counter() - start


@numba.njit(parallel=True)
def _toy(x):  # pragma: no cover - compiled
    out = np.empty(x.shape[0])
    for i in numba.prange(x.shape[0]):
        acc = 0.0
        for j in range(2000):
            acc += np.sin(x[i] + j)
        out[i] = acc
    return out


def parallel_speedup() -> float:
    """Speed-up of a toy numba loop on all threads over one: the cores this process really gets."""
    x = np.linspace(0.0, 1.0, 20_000)
    _toy(x[:10])
    threads = numba.get_num_threads()
    times = {}
    for t in (1, threads):
        numba.set_num_threads(t)
        times[t] = _best_of(2, lambda: _toy(x))[0]
    numba.set_num_threads(threads)
    return times[1] / times[threads]


def _best_of(repeat: int, func) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


# ------------------------------------------------------------------------------------ measurements


def bench_ta(prices: pd.DataFrame, market: pd.DataFrame, sectors: pd.DataFrame, repeat: int) -> dict:
    """(a): ``ta`` ticker by ticker vs our shared-indicator families and our full feature set, on the same rows."""
    from benchmarks.ta_reference import TA_REFERENCE, ta_all

    ones = [g[OHLCV].reset_index(drop=True) for _, g in prices.groupby("ticker", sort=True)]
    start = time.perf_counter()
    for one in ones:
        ta_all(one)
    ta_s = time.perf_counter() - start
    warm_up(prices, market, sectors)
    shared = lambda: compute_features(prices, families=SHARED_FAMILIES)  # noqa: E731
    full = lambda: compute_features(prices, market, sectors)  # noqa: E731
    shared_s, shared_out = _best_of(repeat, shared)
    ours_s, out = _best_of(repeat, full)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        shared_1_s, _ = _best_of(repeat, shared)
        ours_1_s, _ = _best_of(repeat, full)
    finally:
        numba.set_num_threads(threads)
    missing = sorted(set(TA_REFERENCE) - set(shared_out.columns))
    if missing:
        raise RuntimeError(f"the shared run lacks {missing}")
    return {
        "rows": len(prices),
        "tickers": len(ones),
        "shared": len(TA_REFERENCE),
        "features": len(FEATURE_NAMES),
        "shared_features": shared_out.shape[1] - 2,
        "ta_s": ta_s,
        "shared_s": shared_s,
        "shared_1_s": shared_1_s,
        "ours_s": ours_s,
        "ours_1_s": ours_1_s,
        "out_shape": out.shape,
    }


def bench_scale(panel: pd.DataFrame, market: pd.DataFrame, sectors: pd.DataFrame, repeat: int) -> dict:
    """(b): the full feature set on the synthetic panel."""
    warm_up(panel, market, sectors)
    seconds, out = _best_of(repeat, lambda: compute_features(panel, market, sectors))
    return {
        "rows": len(panel),
        "tickers": panel["ticker"].nunique(),
        "seconds": seconds,
        "out_shape": out.shape,
        "out_bytes": int(out.memory_usage(deep=False).sum()),
        "in_bytes": int(panel.memory_usage(deep=False).sum()),
    }


def version_timings(n_tickers: int, years: int, repeat: int) -> dict:
    """(d), in a child: the engine this process imports, timed on (b)'s panel for each of ``VERSION_CASES``."""
    import stockml_core

    prices, market, sectors = load_sample()
    panel, panel_sectors = build_panel(prices, sectors, n_tickers, years)
    warm_up(panel, market, panel_sectors)
    result: dict = {"engine": str(Path(stockml_core.__file__).resolve().parent)}
    for label, families in VERSION_CASES:
        wall = cpu = float("inf")
        for _ in range(repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            compute_features(panel, market, panel_sectors, families=families)
            wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
        result[label] = {"wall": wall, "cpu": cpu}
    return result


def bench_versions(tree: Path, n_tickers: int, years: int, repeat: int, rounds: int) -> dict[str, dict]:
    """(d): both engines in alternating child processes; the best wall and CPU of each case per engine."""
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for name, root in (("that", tree), ("this", ROOT)):
            run = subprocess.run(
                [sys.executable, "-c", _VERSION_CHILD, str(root), str(ROOT), str(n_tickers), str(years), str(repeat)],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            )
            got = json.loads(run.stdout.strip().splitlines()[-1])
            if Path(got["engine"]) != (root / "stockml_core").resolve():
                raise RuntimeError(f"the {name} child imported {got['engine']}, not {root}")
            mine = best.setdefault(name, {"engine": got["engine"]})
            for label, _ in VERSION_CASES:
                old = mine.get(label, {"wall": float("inf"), "cpu": float("inf")})
                mine[label] = {k: min(old[k], got[label][k]) for k in ("wall", "cpu")}
    return best


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0), so the build's own peak does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_child(n_tickers: int, years: int, queue) -> None:
    """(c), in a fresh process: build the panel, then measure the computation's peak RSS above it."""
    prices, market, sectors = load_sample()
    panel, panel_sectors = build_panel(prices, sectors, n_tickers, years)
    warm_up(panel, market, panel_sectors)
    del prices
    gc.collect()
    base = _rss_bytes()
    reset = _reset_peak()
    out = compute_features(panel, market, panel_sectors)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    queue.put({"base": base, "peak": peak, "reset": reset, "out_bytes": int(out.memory_usage(deep=False).sum())})


def bench_memory(n_tickers: int, years: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_memory_child, args=(n_tickers, years, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


# ------------------------------------------------------------------------------------------ report


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers", type=int, default=500, help="synthetic tickers in the scale panel (default 500)")
    parser.add_argument("--years", type=int, default=20, help="years of the real calendar per ticker (default 20, at most 27)")
    parser.add_argument("--repeat", type=int, default=3, help="timings of our engine, best taken (default 3)")
    parser.add_argument("--skip-ta", action="store_true", help="skip (a), the slow ta comparison")
    parser.add_argument("--against", type=Path, help="(d) only: time this engine against the checkout at this path (a previous version)")
    parser.add_argument("--rounds", type=int, default=3, help="(d): alternating rounds (default 3)")
    args = parser.parse_args(argv)
    if not 1 <= args.years <= 27 or args.tickers < 1:
        parser.error("--years must be 1..27 (the sample's calendar spans 1990-2017) and --tickers >= 1")

    print(
        f"machine: {os.cpu_count()} cores, numba {numba.__version__} with {numba.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, pandas {pd.__version__}"
    )
    print(
        f"         a toy numba loop runs {parallel_speedup():.1f}x faster on {numba.get_num_threads()} threads than on 1 "
        "(the parallelism this machine really gives)"
    )

    if args.against is not None:
        tree = args.against.resolve()
        if not (tree / "stockml_core" / "features").is_dir():
            parser.error(f"--against {tree}: not a stockml checkout")
        d = bench_versions(tree, args.tickers, args.years, args.repeat, args.rounds)
        print(
            f"\n(d) this engine ({ROOT}) against that one ({tree}): {args.tickers} tickers x {args.years} years, "
            f"alternating child processes, {args.rounds} rounds, best of {args.repeat} each"
        )
        for label, _ in VERSION_CASES:
            this, that = d["this"][label], d["that"][label]
            wall, cpu = this["wall"] / that["wall"], this["cpu"] / that["cpu"]
            print(
                f"    {label:>22}: this {this['wall']:.2f} s (CPU {this['cpu']:.2f} s), that {that['wall']:.2f} s (CPU {that['cpu']:.2f} s); "
                f"this / that wall {wall:.2f}x, CPU {cpu:.2f}x   target <= {TARGET_VERSION_RATIO:.2f}x: {_mark(wall <= TARGET_VERSION_RATIO)}"
            )
        return

    # Memory first, in a fresh child, while this process is still small.
    mem = bench_memory(args.tickers, args.years)

    prices, market, sectors = load_sample()
    if not args.skip_ta:
        a = bench_ta(prices, market, sectors, args.repeat)
        ratio = a["ta_s"] / a["shared_s"]
        print(f"\n(a) vs ta on the real sample: {a['tickers']} tickers, {a['rows']:,} ticker-days (full history)")
        print(f"    ta, {a['shared']} shared indicators, ticker by ticker: {a['ta_s']:8.2f} s")
        print(
            f"    ours, the families of those indicators ({', '.join(SHARED_FAMILIES)}: {a['shared_features']} features, "
            f"the {a['shared']} shared + {a['shared_features'] - a['shared']} more), prices only: {a['shared_s']:8.3f} s "
            f"(best of {args.repeat}); on 1 numba thread {a['shared_1_s']:.3f} s ({a['ta_s'] / a['shared_1_s']:,.0f}x)"
        )
        print(
            f"    ours, all {a['features']} features with market and sectors: {a['ours_s']:8.3f} s ({a['ta_s'] / a['ours_s']:,.0f}x); "
            f"on 1 numba thread {a['ours_1_s']:.3f} s ({a['ta_s'] / a['ours_1_s']:,.0f}x)"
        )
        print(f"    speed-up ta / ours on the shared indicators: {ratio:,.0f}x   target >= {TARGET_TA_RATIO:.0f}x: {_mark(ratio >= TARGET_TA_RATIO)}")

    panel, panel_sectors = build_panel(prices, sectors, args.tickers, args.years)
    b = bench_scale(panel, market, panel_sectors, args.repeat)
    rate = b["rows"] / b["seconds"]
    print(f"\n(b) scale: {b['tickers']} tickers x {args.years} years ({b['rows'] // b['tickers']:,} rows each) = {b['rows']:,} ticker-days")
    print(f"    all {len(FEATURE_NAMES)} features: {b['seconds']:.2f} s (best of {args.repeat})")
    print(f"    throughput: {rate:,.0f} ticker-days/s   target >= {TARGET_ROWS_PER_S:,}: {_mark(rate >= TARGET_ROWS_PER_S)}")
    print(
        f"    output: {b['out_shape'][0]:,} x {b['out_shape'][1]}, {b['out_bytes']:,} bytes ({b['out_bytes'] / 2**30:.2f} GiB); "
        f"input {b['in_bytes']:,} bytes"
    )

    extra = mem["peak"] - mem["base"]
    peak_ratio = extra / mem["out_bytes"]
    print("\n(c) memory of that computation (fresh spawn child):")
    print(
        f"    RSS after building the input: {mem['base'] / 2**30:.2f} GiB; peak RSS (ru_maxrss): {mem['peak'] / 2**30:.2f} GiB"
        f"{'' if mem['reset'] else ' (high-water mark not reset: includes the build)'}"
    )
    print(
        f"    peak - input = {extra / 2**30:.2f} GiB = {peak_ratio:.2f}x the output   target < {TARGET_PEAK_RATIO:.0f}x: "
        f"{_mark(peak_ratio < TARGET_PEAK_RATIO)}"
    )


if __name__ == "__main__":
    main()
