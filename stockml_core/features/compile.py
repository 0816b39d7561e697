"""Compile (and cache) the numba feature kernels: ``python -m stockml_core.features.compile``.

The first compilation takes about a minute on 2 cores; numba caches the machine code next to the
sources, so later processes load it in a fraction of a second. ``make install`` runs this once.
"""

import time

import numpy as np
import pandas as pd


def warm_up() -> float:
    """Run every kernel once on a tiny synthetic panel; returns the seconds it took."""
    from stockml_core.features import compute_features

    start = time.perf_counter()
    dates = pd.bdate_range("2000-01-03", periods=40)
    rng = np.random.default_rng(0)
    frames = []
    for ticker in ("A", "B"):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(dates))))
        frames.append(
            pd.DataFrame({"ticker": ticker, "date": dates, "open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1e6})
        )
    prices = pd.concat(frames, ignore_index=True)
    market = pd.DataFrame({"date": dates, "spx_close": 1000.0 + np.arange(len(dates)), "vix_close": 20.0, "dgs10": 4.0})
    sectors = pd.DataFrame({"ticker": ["A", "B"], "gics_sector": ["Energy", "Energy"]})
    compute_features(prices, market, sectors)
    return time.perf_counter() - start


if __name__ == "__main__":
    print("compiling the feature kernels (cached after the first time) ...", flush=True)
    print(f"feature kernels ready in {warm_up():.1f} s")
