"""Drift retraining policy on the real sample: ``.venv/bin/python benchmarks/drift_policy.py [--workers 2]``.

Replays the drift score and the retraining policy (``stockml_core.decisions.drift``) on every trading day of the
sample (1990-2017): for each day, ``feature_drift`` and the regime mix shift on the trailing windows
ending that day (no champion, so no prediction part), then ``simulate_policy`` over the daily scores.
Checks the two targets of the defaults:

- every crash onset (``crash_onsets``) gets a trigger 0 to 5 trading days after it;
- on quiet days (``quiet_days``) at most one trigger per 250 quiet trading days.

Also times ``feature_drift`` on one full day (every feature x every ticker x the two windows).
``--set name=value`` overrides a ``DriftSettings`` field; ``--scores file.csv`` caches the daily scores
(reused when present and computed with the same settings).
"""

import argparse
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``stockml_core`` importable
    sys.path.insert(0, str(ROOT))

from stockml_core.decisions.drift import (  # noqa: E402
    crash_onsets,
    daily_drift_scores,
    date_level_features,
    feature_drift,
    quiet_days,
    simulate_policy,
)
from stockml_core.features import FEATURE_NAMES, compute_features  # noqa: E402
from stockml_core.market.data import align_market_to_prices, load_market, load_prices, load_universe  # noqa: E402
from stockml_core.market.regimes import compute_regimes  # noqa: E402
from stockml_core.settings import SAMPLE_DATA_DIR, DriftSettings  # noqa: E402

MAX_DELAY = 5  # trading days from onset to trigger
QUIET_BUDGET = 1.0  # triggers per 250 quiet trading days
# An onset with fewer trading days of history has no meaningful reference (the features' own warm-up
# is up to 250 days): reported, not counted in the target (1990-01-30, the 19th day of the sample).
MIN_HISTORY = 60

_STATE: dict = {}


def load(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Features of every ticker and day, the market (aligned to stock days) and the regimes, read as the
    platform ingests them: the market from the prices' first day (market_context holds the run's days)."""
    prices, _ = load_prices(data_dir)
    market, _ = load_market(data_dir)
    market, _ = align_market_to_prices(market, prices)
    market = market[market.date >= prices.date.min()].reset_index(drop=True)
    features = compute_features(prices, market, load_universe(data_dir))
    market = market[market.date <= prices.date.max()].reset_index(drop=True)
    return features, market, compute_regimes(market)


def _init(features: pd.DataFrame, regimes: pd.DataFrame, s: DriftSettings) -> None:
    _STATE.update(features=features, regimes=regimes, s=s, level=date_level_features())


def _block(days: np.ndarray) -> pd.DataFrame:
    st = _STATE
    return daily_drift_scores(st["features"], st["regimes"], FEATURE_NAMES, st["s"], st["level"], days)


def scores_for(features: pd.DataFrame, regimes: pd.DataFrame, s: DriftSettings, days: np.ndarray, workers: int) -> pd.DataFrame:
    """``daily_drift_scores`` for ``days``, split in contiguous blocks over ``workers`` processes."""
    blocks = [b for b in np.array_split(days, max(1, workers) * 8) if len(b)]
    if workers <= 1:
        _init(features, regimes, s)
        return pd.concat([_block(b) for b in blocks])
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(workers, initializer=_init, initargs=(features, regimes, s)) as pool:
        return pd.concat(pool.map(_block, blocks))


def evaluate(scores: pd.Series, market: pd.DataFrame, s: DriftSettings, quiet_run: int = 1) -> dict:
    """Triggers, each onset's first trigger on or after it and its delay, and the quiet-day trigger rate."""
    triggers = simulate_policy(scores, s)
    days = pd.DatetimeIndex(scores.index)
    t_idx = np.array([days.get_loc(pd.Timestamp(t["day"])) for t in triggers], dtype=int)
    rows = []
    for onset in [o for o in crash_onsets(market, quiet_run) if days[0] <= o <= days[-1]]:
        i = days.searchsorted(onset)
        after = t_idx[t_idx >= i]
        before = t_idx[(t_idx < i) & (t_idx >= i - 20)]
        rows.append(
            {
                "onset": onset.date(),
                "history": i,
                "assessable": i >= MIN_HISTORY,
                "trigger": days[after[0]].date() if len(after) else None,
                "delay": int(after[0] - i) if len(after) else None,
                "met": bool(len(after) and after[0] - i <= MAX_DELAY),
                "trigger_in_20_days_before": days[before[-1]].date() if len(before) else None,
            }
        )
    quiet = quiet_days(market).reindex(days, fill_value=False)
    n_quiet = int(quiet.sum())
    quiet_triggers = [t for t in triggers if quiet.loc[pd.Timestamp(t["day"])]]
    return {
        "triggers": triggers,
        "onsets": pd.DataFrame(rows),
        "quiet_days": n_quiet,
        "quiet_triggers": quiet_triggers,
        "quiet_rate": len(quiet_triggers) / n_quiet * 250 if n_quiet else float("nan"),
    }


def time_feature_drift(features: pd.DataFrame, s: DriftSettings, repeat: int = 5) -> tuple[float, tuple]:
    """Best-of-``repeat`` seconds of ``feature_drift`` on the last day's windows, and the panel's shape."""
    days = np.sort(features.date.unique())[-(s.current_window + s.reference_window) :]
    window = features[features.date.isin(days)]
    level = date_level_features()
    feature_drift(window, FEATURE_NAMES, s, level)
    best = min(_timed(lambda: feature_drift(window, FEATURE_NAMES, s, level)) for _ in range(repeat))
    return best, (len(FEATURE_NAMES), window.ticker.nunique(), len(days))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _parse_set(items: list[str], s: DriftSettings) -> DriftSettings:
    changes = {}
    for item in items:
        name, value = item.split("=", 1)
        changes[name] = type(getattr(s, name))(value)
    return replace(s, **changes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SAMPLE_DATA_DIR)
    ap.add_argument("--start", default="1990-01-01")
    ap.add_argument("--end", default="2017-12-31")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--scores", type=Path, default=None, help="CSV cache of the daily scores")
    ap.add_argument("--set", nargs="*", default=[], help="DriftSettings overrides, e.g. score_threshold=0.4")
    ap.add_argument("--quiet-run", type=int, default=1, help="consecutive quiet days that re-arm crash_onsets")
    args = ap.parse_args()
    s = _parse_set(args.set, DriftSettings())
    print("settings:", asdict(s))

    t0 = time.perf_counter()
    features, market, regimes = load(args.data)
    print(f"features {features.shape} in {time.perf_counter() - t0:.1f}s")
    best, shape = time_feature_drift(features, s)
    print(f"feature_drift on one day ({shape[0]} features x {shape[1]} tickers x {shape[2]} days): {best * 1e3:.0f} ms")

    all_days = np.sort(features.date.unique())
    days = all_days[(all_days >= np.datetime64(args.start)) & (all_days <= np.datetime64(args.end))]
    key = f"{args.start} {args.end} {sorted(asdict(s).items())}"
    key_file = args.scores.with_suffix(".key") if args.scores else None
    if key_file and key_file.exists() and args.scores.exists() and key_file.read_text() == key:
        table = pd.read_csv(args.scores, index_col="date", parse_dates=["date"])
        print(f"daily scores: {len(table)} days from {args.scores}")
    else:
        t0 = time.perf_counter()
        table = scores_for(features, regimes, s, days, args.workers)
        wall = time.perf_counter() - t0
        print(
            f"daily scores: {len(table)} days in {wall:.0f}s on {args.workers} worker(s) "
            f"({wall / len(table) * args.workers * 1e3:.0f} ms per day per worker, feature_drift included)"
        )
        if args.scores:
            table.to_csv(args.scores)
            key_file.write_text(key)

    res = evaluate(table.score, market, s, args.quiet_run)
    onsets = res["onsets"]
    print(f"\ncrash onsets ({len(onsets)}, re-armed by {args.quiet_run} quiet day(s) in a row): trigger 0-{MAX_DELAY} trading days after each")
    print(onsets.to_string(index=False))
    counted = onsets[onsets.assessable]
    print(f"met: {int(counted.met.sum())}/{len(counted)} assessable onsets (>= {MIN_HISTORY} days of history)")
    print(
        f"\nquiet days: {res['quiet_days']}, triggers on quiet days: {len(res['quiet_triggers'])} "
        f"({', '.join(t['day'] for t in res['quiet_triggers']) or 'none'}); "
        f"rate {res['quiet_rate']:.2f} per 250 quiet days (target <= {QUIET_BUDGET})"
    )
    print(f"all triggers: {len(res['triggers'])} in {len(table)} trading days")
    ok = bool(counted.met.all()) and res["quiet_rate"] <= QUIET_BUDGET
    print(f"\ntargets {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
