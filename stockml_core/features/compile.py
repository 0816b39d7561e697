"""Compile (and cache) the numba feature kernels: ``python -m stockml_core.features.compile``.

Each kernel compiles on its own (``kernels.py``), so the first compilation runs in parallel child
processes (``python -c``, this package's tree first on their path): each computes a group of
families (``COMPILE_GROUPS``) on a tiny synthetic panel, so each kernel compiles in exactly one of
them, and numba caches its machine code next to the sources (or in ``NUMBA_CACHE_DIR``).
The parent then runs every path (full, incremental, in blocks) from the cache, and later processes
load the kernels in a fraction of a second. ``make install`` runs this once; the README's Features
section has the figures.
"""

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

# The families each compile process computes, about equal in compile time from an empty cache
# (CPU seconds measured alone, 2-core AMD EPYC: 26 and 27). A cross-sectional feature's sources'
# families (returns, volatility, volume) compile with it: alone, rolling 14, trend 12, momentum 7,
# volume 7, volatility 8, beta 4, candle, returns 1-2, market 0.5, the cross-section ~3.
COMPILE_GROUPS = (
    ("cross_section", "momentum", "market", "candle"),
    ("rolling", "trend", "beta"),
)


def _panel() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(prices, market, sectors): two tickers of 40 synthetic business days."""
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
    return prices, market, sectors


def _compile(families: tuple[str, ...]) -> float:
    """Compute ``families`` on the tiny panel (compiling, or loading, their kernels); returns the seconds."""
    from stockml_core.features import compute_features

    start = time.perf_counter()
    prices, market, sectors = _panel()
    compute_features(prices, market, sectors, families=families)
    return time.perf_counter() - start


def _every_path() -> None:
    """The full computation, the incremental one (``update_features``) and the blocks of ``feature_blocks``."""
    from stockml_core.features import compute_features, feature_blocks, update_features

    prices, market, sectors = _panel()
    cut = prices["date"].iloc[30]
    stored = compute_features(prices[prices["date"] < cut], market, sectors)
    update_features(stored, prices, market, sectors)
    for _ in feature_blocks(prices, cut, market, sectors, max_rows=20):
        pass


def warm_up(processes: int | None = None) -> float:
    """Compile (or load from the cache) every kernel, then run every path once; returns the seconds.

    ``processes`` (default: one per group of ``COMPILE_GROUPS``, at most one per core) compile in
    parallel first; with 1 everything compiles here, one kernel after the other.
    """
    start = time.perf_counter()
    if processes is None:
        processes = min(len(COMPILE_GROUPS), os.cpu_count() or 1)
    if processes > 1:
        _compile_in_children(COMPILE_GROUPS, processes)
    _every_path()
    return time.perf_counter() - start


def _compile_in_children(groups: tuple[tuple[str, ...], ...], processes: int) -> None:
    """``_compile`` each group in a child process, ``processes`` at a time (plain ``python -c``
    children: nothing of the caller's ``__main__`` is imported again, as ``multiprocessing`` would)."""
    env = dict(os.environ)
    tree = str(Path(__file__).resolve().parents[2])  # the children compile this tree's kernels
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, env.get("PYTHONPATH")) if p)
    code = "import sys; from stockml_core.features.compile import _compile; _compile(tuple(sys.argv[1:]))"
    waiting = list(groups)
    running: list[tuple[tuple[str, ...], subprocess.Popen]] = []
    while waiting or running:
        while waiting and len(running) < processes:
            group = waiting.pop(0)
            running.append((group, subprocess.Popen([sys.executable, "-c", code, *group], env=env)))
        group, child = running.pop(0)
        if child.wait():
            for _, other in running:
                other.kill()
            raise RuntimeError(f"compiling the kernels of {list(group)} failed (exit code {child.returncode})")


def compiled_here() -> list[str]:
    """The kernels this process compiled rather than loaded from the cache (none after ``warm_up``
    with more than one process, unless the cache is not writable)."""
    from numba.core.registry import CPUDispatcher

    from stockml_core.features import kernels

    return sorted(
        name for name, obj in vars(kernels).items() if isinstance(obj, CPUDispatcher) and obj.signatures and sum(obj.stats.cache_misses.values())
    )


if __name__ == "__main__":
    print("compiling the feature kernels (cached after the first time) ...", flush=True)
    seconds = warm_up()
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    print(f"feature kernels ready in {seconds:.1f} s ({cpu:.1f} s CPU, compile processes included)")
    if here := compiled_here():
        print(f"compiled here, not loaded from the cache: {', '.join(here)}")
