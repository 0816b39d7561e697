"""What the process-global caches buy, measured (issue 17, item 8).

Each cache is timed on a miss (cleared first) and on a hit, wall and CPU, in one run; then, with
``--run``, a fast-profile history run on a real slice is executed
in this process (then one daily run per day over its last two weeks, as ``stockml replay`` plays
days) and each cache's hits and misses during them are counted: the seconds a cache saves
there are its hits times (miss - hit).

- ``market.data._parsed_csv``: a data folder's CSV parsed once per (path, mtime, size); callers get a copy.
- ``market.data._latest_date``: the prices file's last date, read from its date column.
(``features.engine._layout``, the output rows of the selected families, was a fourth: its miss took 0.1 ms
and it handed out shared mutable arrays; removed.)
- ``assets.monitoring._mix_plot_cached``: the PNG of a market-state mix (most days repeat the day before's).

    .venv/bin/python benchmarks/caches.py                      # us-broad's files, the misses and hits
    .venv/bin/python benchmarks/caches.py --run --tickers XOM,JPM,KO,IBM,GE,AEP --start 2003-01-01
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stockml_assets.assets import monitoring  # noqa: E402
from stockml_core.market import data  # noqa: E402
from stockml_core.settings import SAMPLE_DATA_DIR  # noqa: E402

US_BROAD = ROOT.parent / "shared" / "data" / "us-broad"
CACHES = {
    "data._parsed_csv": data._parsed_csv,
    "data._latest_date": data._latest_date,
    "monitoring._mix_plot_cached": monitoring._mix_plot_cached,
}


def _timed(fn, repeat: int = 1) -> tuple[float, float]:
    """Best wall and its CPU seconds of ``repeat`` calls."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w0, time.process_time() - c0))
    return best


def _calls(folder: Path) -> dict:
    """One call of each cached function, as production makes it (the same arguments each time)."""
    prices = data.prices_file(folder)
    st = prices.stat()
    mix = pd.DataFrame(
        {"category": ["calm", "normal", "volatile", "crash"], "reference_share": [0.3, 0.5, 0.15, 0.05], "current_share": [0.0, 0.6, 0.4, 0.0]}
    )
    return {
        "data._parsed_csv": lambda: data._parsed_csv(str(prices), st.st_mtime_ns, st.st_size, "prices").copy(),
        "data._latest_date": lambda: data.latest_price_date(folder),
        "monitoring._mix_plot_cached": lambda: monitoring._mix_plot_md(mix, "market states"),
    }


def misses_and_hits(folder: Path) -> pd.DataFrame:
    rows = []
    for name, call in _calls(folder).items():
        call()  # one-time costs first (imports: matplotlib's pyplot alone takes 0.3 s)
        CACHES[name].cache_clear()
        miss = _timed(call)
        hit = _timed(call, repeat=5)
        rows.append({"cache": name, "miss_s": miss[0], "miss_cpu_s": miss[1], "hit_s": hit[0], "hit_cpu_s": hit[1], "hit/miss": hit[0] / miss[0]})
    return pd.DataFrame(rows)


def _counts(fn) -> dict[str, int]:
    info = fn.cache_info()
    return {"hits": info["hits"], "misses": info["misses"]} if isinstance(info, dict) else {"hits": info.hits, "misses": info.misses}


def during_a_run(tickers: list[str], start: str) -> pd.DataFrame:
    from dagster import DagsterInstance

    from stockml_assets.definitions import build_definitions
    from stockml_assets.instance_storage import event_log_config
    from stockml_assets.partitions import day_keys
    from stockml_assets.runs import data_span, run_daily, run_history

    for fn in CACHES.values():
        fn.cache_clear()
    with tempfile.TemporaryDirectory() as tmp:
        defs = build_definitions(home=f"{tmp}/home", data_dir=SAMPLE_DATA_DIR, tickers=tickers, start=start, fast=True)
        Path(f"{tmp}/dh").mkdir()
        overrides = {"event_log_storage": event_log_config(f"{tmp}/dh/history/runs"), "telemetry": {"enabled": False}}
        with DagsterInstance.local_temp(f"{tmp}/dh", overrides=overrides) as instance:
            first, last = data_span(defs.resources["stockml"].settings())
            t0 = time.perf_counter()
            quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
            assert run_history(defs, instance, max(first, pd.Timestamp(start)), last, run_config=quiet).success
            for day in day_keys(last - pd.Timedelta(days=14), last):  # day by day, as `stockml replay` plays them
                assert run_daily(defs, instance, day, run_config=quiet).success
            wall = time.perf_counter() - t0
    rows = [{"cache": name, **_counts(fn)} for name, fn in CACHES.items()]
    print(f"\nhistory run, {len(tickers)} tickers from {start}, then a daily run for each of its last two weeks' days: {wall:.1f} s wall")
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=US_BROAD if US_BROAD.exists() else SAMPLE_DATA_DIR)
    ap.add_argument("--run", action="store_true", help="also count each cache's hits during a history + daily run")
    ap.add_argument("--tickers", default="XOM,JPM,KO,IBM,GE,AEP")
    ap.add_argument("--start", default="2003-01-01")
    args = ap.parse_args()
    table = misses_and_hits(args.folder)
    path = data.prices_file(args.folder)
    held = data._parsed_csv(str(path), path.stat().st_mtime_ns, path.stat().st_size, "prices").memory_usage(deep=True).sum()
    print(f"a cached parse of {path} holds {held / 2**20:.0f} MiB (one per file version, at most {data._parsed_csv.max_files} files)")
    print(f"one miss and one hit of each cache ({args.folder}):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.run:
        counts = during_a_run(args.tickers.split(","), args.start)
        sample = misses_and_hits(SAMPLE_DATA_DIR).set_index("cache")  # the run's folder
        counts["saved_s"] = [h * (sample.loc[c, "miss_s"] - sample.loc[c, "hit_s"]) for c, h in zip(counts.cache, counts.hits, strict=True)]
        print(counts.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
