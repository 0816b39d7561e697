"""The feature engine: the registry's features for a panel of prices, full, incremental or in blocks.

The contract is the package's (``stockml_core.features``); ``kernels.py`` computes the values.
"""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from stockml_core.features import kernels
from stockml_core.features.registry import (
    CROSS_SECTION,
    FAMILIES,
    FEATURE_NAMES,
    FEATURE_REGISTRY,
    MARKET_FEATURES,
    MAX_LOOKBACK,
    PER_TICKER,
    PER_TICKER_FAMILIES,
    SECTOR_FEATURES,
    family_block,
    feature_spec,
)
from stockml_core.market.quality import segment_starts

__all__ = [
    "ENGINE_VERSION",
    "MIN_BLOCK_DAYS",
    "block_days",
    "compute_features",
    "compute_features_since",
    "feature_blocks",
    "history_fingerprint",
    "row_positions",
    "update_features",
    "warmup_violations",
]

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
MARKET_COLUMNS = ("spx_close", "vix_close", "dgs10")
# A stock row takes the last market row dated <= its date, but never one older than this: a market
# feed that stops early yields NaN (reported by warmup_violations) rather than stale values.
MARKET_ASOF_TOLERANCE = pd.Timedelta(days=10)

# Changes whenever the engine's code or registry changes: a stored matrix from another version is
# recomputed in full rather than extended.
ENGINE_VERSION = hashlib.sha256(
    b"".join((Path(__file__).parent / name).read_bytes() for name in ("engine.py", "kernels.py", "registry.py"))
).hexdigest()[:16]

_N_TICKER = len(PER_TICKER)
# Each per-ticker family's kernel writes its registry block from the block's first feature.
_BLOCKS = np.array([family_block(f).start for f in PER_TICKER_FAMILIES], dtype=np.int64)
_BLOCK_SIZES = np.array([len(family_block(f)) for f in PER_TICKER_FAMILIES], dtype=np.int64)
assert len(PER_TICKER_FAMILIES) == kernels.N_FAMILIES
_MARKET_NAMES = [s.name for s in FEATURE_REGISTRY if s.family == "market"]
_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
_LOOKBACK = np.array([s.lookback for s in FEATURE_REGISTRY], dtype=np.int64)
_KINDS = {
    "rank": kernels.RANK,
    "zscore": kernels.ZSCORE,
    "sector_diff": kernels.SECTOR_DIFF,
    "sector_ratio": kernels.SECTOR_RATIO,
    "sector_rank": kernels.SECTOR_RANK,
}
_CS_SPECS = sorted(CROSS_SECTION, key=lambda spec: _INDEX[spec[1]])  # grouped by source: one gather each
# Per-ticker families, most expensive first (single-thread run time on the sample): within each
# range of tickers the thread pool starts on them, and the cheap ones fill in at the end.
_FAMILY_ORDER = tuple(PER_TICKER_FAMILIES.index(f) for f in ("rolling", "trend", "volatility", "volume", "momentum", "beta", "returns", "candle"))
assert sorted(_FAMILY_ORDER) == list(range(len(PER_TICKER_FAMILIES)))
_TASKS_PER_THREAD = 4  # tickers (or dates) of a stage are split in this many parts per thread
_MIN_TASK_ROWS = 20_000  # but no part smaller than this many rows (a task costs a few microseconds)
assert FEATURE_NAMES[:_N_TICKER] == [s.name for s in PER_TICKER], "per-ticker families must come first"
assert FEATURE_NAMES[_N_TICKER : _N_TICKER + len(_MARKET_NAMES)] == _MARKET_NAMES
assert FEATURE_NAMES[_N_TICKER + len(_MARKET_NAMES) :] == [name for name, _, _ in CROSS_SECTION]


# ----------------------------------------------------------------------------------------- threads


def _threads() -> int:
    """Threads for the kernels: numba's thread count, so ``numba.set_num_threads(1)`` means one."""
    return max(1, numba.get_num_threads())


def _spans(offsets: np.ndarray, threads: int) -> list[tuple[int, int]]:
    """Consecutive ranges (a, b) of the segments ``offsets[s]:offsets[s + 1]`` of about equal rows:
    one range on one thread, else about ``_TASKS_PER_THREAD`` per thread, none under ``_MIN_TASK_ROWS``."""
    n_seg = len(offsets) - 1
    rows = int(offsets[-1] - offsets[0])
    parts = 1 if threads == 1 else max(1, min(n_seg, threads * _TASKS_PER_THREAD, rows // _MIN_TASK_ROWS))
    if parts == 1:
        return [(0, n_seg)]
    cuts = np.searchsorted(offsets, np.linspace(offsets[0], offsets[-1], parts + 1)[1:-1])
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 0, n_seg), [n_seg]]))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _run(calls: list, threads: int) -> None:
    """Run every ``(kernel, *args)`` of ``calls``, on ``threads`` threads (the kernels release the GIL)."""
    if threads == 1 or len(calls) <= 1:
        for kernel, *args in calls:
            kernel(*args)
        return
    with ThreadPoolExecutor(min(threads, len(calls))) as pool:
        for future in [pool.submit(*call) for call in calls]:
            future.result()


# ------------------------------------------------------------------------------------------ market


def _series(market: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    s = market[["date", column]].dropna().sort_values("date", kind="mergesort")
    return s["date"].to_numpy(dtype="datetime64[ns]"), s[column].to_numpy(dtype=np.float64)


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _rolling(x: np.ndarray, w: int, stat: str, **kw) -> np.ndarray:
    return getattr(pd.Series(x).rolling(w, min_periods=w), stat)(**kw).to_numpy(dtype=np.float64)


def _zscore(x: np.ndarray, w: int) -> np.ndarray:
    mean = _rolling(x, w, "mean")
    sd = _rolling(x, w, "std", ddof=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 1e-12 * np.maximum(np.abs(mean), 1.0), (x - mean) / sd, np.where(np.isnan(sd), np.nan, 0.0))


def _rank_in_window(x: np.ndarray, w: int) -> np.ndarray:
    """Share of the last w values <= today's (today included)."""
    out = np.full(len(x), np.nan)
    if len(x) >= w:
        win = np.lib.stride_tricks.sliding_window_view(x, w)
        out[w - 1 :] = (win <= win[:, -1:]).sum(axis=1) / w
    return out


def _market_tables(market: pd.DataFrame) -> list[pd.DataFrame]:
    """Market features on each series' own rows (its row index is their warm-up axis)."""
    missing = [col for col in ("date", *MARKET_COLUMNS) if col not in market.columns]
    if missing:
        raise ValueError(f"market frame lacks columns {missing}")
    if market["date"].duplicated().any():
        raise ValueError("market frame must have one row per date")
    tables = []
    with np.errstate(divide="ignore", invalid="ignore"):
        d, x = _series(market, "vix_close")
        f = {"vix_level": x}
        for k in (1, 5, 20):
            f[f"vix_change_{k}"] = x - _shift(x, k)
        f["vix_rank_250"] = _rank_in_window(x, 250)
        f["vix_zscore_60"] = _zscore(x, 60)
        tables.append(_masked(d, f))

        d, x = _series(market, "spx_close")
        f = {f"spx_ret_{k}": x / _shift(x, k) - 1.0 for k in (1, 5, 20, 60)}
        f["spx_drawdown"] = x / np.maximum.accumulate(x) - 1.0 if len(x) else x
        f["spx_drawdown_250"] = x / _rolling(x, 250, "max") - 1.0
        for w in (20, 60):
            f[f"spx_volatility_{w}"] = _rolling(f["spx_ret_1"], w, "std")
        sma200 = _rolling(x, 200, "mean")
        f["spx_trend_200"] = x / sma200 - 1.0
        f["spx_sma_50_200"] = _rolling(x, 50, "mean") / sma200 - 1.0
        table = _masked(d, f)
        table["_spx_close"] = x
        tables.append(table)

        d, x = _series(market, "dgs10")
        f = {f"dgs10_change_{k}": x - _shift(x, k) for k in (5, 20, 60)}
        f["dgs10_zscore_250"] = _zscore(x, 250)
        tables.append(_masked(d, f))
    return tables


def _masked(dates: np.ndarray, f: dict[str, np.ndarray]) -> pd.DataFrame:
    pos = np.arange(len(dates))
    table = pd.DataFrame({"date": dates})
    for name, values in f.items():
        table[name] = np.where(pos < feature_spec(name).lookback, np.nan, values)
    return table


def _market_by_date(unique_dates: np.ndarray, market: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(market features per unique date [n_dates, n_market], S&P close per unique date)."""
    left = pd.DataFrame({"date": unique_dates})
    for table in _market_tables(market):
        left = pd.merge_asof(left, table, on="date", direction="backward", tolerance=MARKET_ASOF_TOLERANCE)
    return left[_MARKET_NAMES].to_numpy(dtype=np.float64), left["_spx_close"].to_numpy(dtype=np.float64)


# ------------------------------------------------------------------------------------------ prices


def _prepare_prices(prices: pd.DataFrame) -> pd.DataFrame:
    """Validated frame sorted by (ticker, date)."""
    return _prepare(prices)[0]


def _prepare(prices: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(frame sorted by (ticker, date), ticker code per row, ticker names).

    Input already in (ticker, date) order with ``datetime64[ns]`` dates (the stored layout) is used
    as it is, without a copy: the frame returned may be ``prices`` itself and is only read.
    """
    missing = [col for col in ("ticker", "date", *PRICE_COLUMNS) if col not in prices.columns]
    if missing:
        raise ValueError(f"prices frame lacks columns {missing}")
    frame = prices
    if frame["date"].dtype != "datetime64[ns]":
        frame = frame.assign(date=pd.to_datetime(frame["date"]).astype("datetime64[ns]"))
    codes, uniques = pd.factorize(frame["ticker"])  # a null ticker gets code -1
    if (codes < 0).any() or frame["date"].isna().any():
        raise ValueError("prices have null ticker or date values")
    ordered = True
    if len(frame) > 1:
        step = np.diff(codes)
        within = step == 0
        ordered = (
            bool((step >= 0).all())
            and list(uniques) == sorted(uniques)
            and bool((np.diff(frame["date"].to_numpy().view(np.int64))[within] > 0).all())
        )
    if not ordered:
        cols = ["ticker", "date", *PRICE_COLUMNS] + (["gics_sector"] if "gics_sector" in frame.columns else [])
        frame = frame[cols].sort_values(["ticker", "date"], kind="mergesort").reset_index(drop=True)
        if frame.duplicated(["ticker", "date"]).any():
            raise ValueError("prices must have one row per (ticker, date)")
        codes, uniques = pd.factorize(frame["ticker"])
    return frame, codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _sector_codes(frame: pd.DataFrame, ticker_codes: np.ndarray, ticker_names: np.ndarray, sectors: pd.DataFrame | None) -> tuple[np.ndarray, int]:
    if sectors is not None:
        if not {"ticker", "gics_sector"} <= set(sectors.columns):
            raise ValueError("sectors frame needs columns ticker and gics_sector")
        mapping = sectors.drop_duplicates("ticker", keep="last").set_index("ticker")["gics_sector"]
        per_ticker, names = pd.factorize(pd.Series(ticker_names).map(mapping))  # unknown ticker -> -1
        return per_ticker.astype(np.int64)[ticker_codes], len(names)
    if "gics_sector" in frame.columns:
        codes, names = pd.factorize(frame["gics_sector"])
        return codes.astype(np.int64), len(names)
    return np.full(len(frame), -1, dtype=np.int64), 0


def _f64(x: pd.Series) -> np.ndarray:
    return np.ascontiguousarray(x.to_numpy(dtype=np.float64))


def _layout(families: tuple[str, ...]) -> tuple[list[str], np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]:
    """For the selected families: (feature names, output row of each registry feature or -1, rows to
    allocate, cross-section source / kind / destination rows). Selected features come first in
    registry order; sources of selected cross-sectional features that are not selected themselves get
    scratch rows after them (computed, not returned)."""
    names = [s.name for s in FEATURE_REGISTRY if s.family in families]
    rows = np.full(len(FEATURE_NAMES), -1, dtype=np.int64)
    rows[[_INDEX[name] for name in names]] = np.arange(len(names))
    n_rows = len(names)
    specs = _CS_SPECS if "cross_section" in families else []
    for _, src, _ in specs:
        if rows[_INDEX[src]] < 0:
            rows[_INDEX[src]] = n_rows
            n_rows += 1
    cs_src = np.array([rows[_INDEX[src]] for _, src, _ in specs], dtype=np.int64)
    cs_kind = np.array([_KINDS[kind] for _, _, kind in specs], dtype=np.int64)
    cs_dst = np.array([rows[_INDEX[name]] for name, _, _ in specs], dtype=np.int64)
    for shared in (rows, cs_src, cs_kind, cs_dst):  # cached and shared between calls
        shared.setflags(write=False)
    return names, rows, n_rows, cs_src, cs_kind, cs_dst


def _families(families) -> tuple[str, ...]:
    if families is None:
        return FAMILIES
    chosen = (families,) if isinstance(families, str) else tuple(families)
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown feature families {unknown}; the families are {list(FAMILIES)}")
    return tuple(f for f in FAMILIES if f in chosen)


def compute_features(
    prices: pd.DataFrame, market: pd.DataFrame | None = None, sectors: pd.DataFrame | None = None, families=None, holes: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Compute every registry feature for each (ticker, date) row, using only data up to that date.

    Returns ``ticker, date`` + float32 ``FEATURE_NAMES`` columns, sorted by (ticker, date).
    ``families`` (default: all of ``FAMILIES``) restricts the columns to those families' features, in
    registry order. Each per-ticker family has its own kernel, run only when one of its features is
    needed (selected, or the source of a selected cross-sectional feature); leaving out ``market`` or
    ``cross_section`` skips those stages. ``holes`` (ticker, date): quarantined trading days (``stockml_core.market.quality``); each
    breaks its ticker's history there, so every per-ticker window that would span it is NaN, exactly
    as during a warm-up (the history restarts after the hole).
    """
    families = _families(families)
    layout = _layout(families)
    frame, ticker_codes, ticker_names = _prepare(prices)
    out = _per_ticker_out(frame, ticker_codes, ticker_names, market, families, layout, holes)
    _cross_section_into(out, frame, ticker_codes, ticker_names, sectors, families, layout)
    return _as_frame(out, layout[0], frame)


def _as_frame(out: np.ndarray, names: list[str], frame: pd.DataFrame) -> pd.DataFrame:
    df = pd.DataFrame(out[: len(names)].T, columns=names, copy=False)
    df.insert(0, "date", frame["date"].to_numpy())
    df.insert(0, "ticker", frame["ticker"].to_numpy())
    return df


def _per_ticker_out(frame, ticker_codes, ticker_names, market, families, layout, holes=None) -> np.ndarray:
    """The (feature, row) float32 output with the per-ticker and market stages filled in.

    Every value of a row here depends only on its own ticker's rows up to its date and on the market
    table, so the stage may run on any set of whole tickers; the cross-section is left to
    ``_cross_section_into`` (it needs every ticker of a date)."""
    _, rows, n_rows, _, _, _ = layout
    n = len(frame)
    out = np.empty((n_rows, n), dtype=np.float32)
    if not n:
        return out
    dates = frame["date"].to_numpy()
    is_start = segment_starts(ticker_codes, dates, _coded_holes(holes, ticker_names))
    starts = np.append(np.flatnonzero(is_start), n).astype(np.int64)
    date_codes, unique_dates = pd.factorize(dates, sort=True)
    date_codes = date_codes.astype(np.int64)
    unique_dates = np.asarray(unique_dates, dtype="datetime64[ns]")

    use_market = market is not None and ("market" in families or "beta" in families)
    if use_market:
        by_date, spx_by_date = _market_by_date(unique_dates, market)
        spx = spx_by_date[date_codes]
    else:
        spx = np.full(n, np.nan)
    o, h, lo, c, v = (_f64(frame[col]) for col in PRICE_COLUMNS)
    has_beta = use_market and "beta" in families
    # A family runs when any of its features is stored (selected, or a cross-section's source).
    run = np.array([(rows[b : b + size] >= 0).any() for b, size in zip(_BLOCKS, _BLOCK_SIZES, strict=True)])
    written = np.zeros((len(starts) - 1, kernels.N_FAMILIES), dtype=np.int64)
    threads = _threads()
    spans = _spans(starts, threads)
    _run(
        [
            (kernels.TICKER_KERNELS[f], o, h, lo, c, v, spx, has_beta, starts, t0, t1, _LOOKBACK, rows, out, int(_BLOCKS[f]), written)
            for t0, t1 in spans  # a range of tickers at a time (its prices stay in cache), heavy families first
            for f in _FAMILY_ORDER
            if run[f]
        ],
        threads,
    )
    expected = np.where(run, _BLOCK_SIZES, 0)
    drifted = [f for f, ok in zip(PER_TICKER_FAMILIES, (written == expected).all(axis=0), strict=True) if not ok]
    if drifted:  # registry and kernels must never drift apart
        raise RuntimeError(
            f"feature kernels of {drifted} wrote {[sorted(set(written[:, PER_TICKER_FAMILIES.index(f)].tolist())) for f in drifted]} "
            f"features, the registry has {[len(family_block(f)) for f in drifted]}"
        )

    if "market" in families:
        m0 = rows[_N_TICKER]  # market features are contiguous in the registry and in the output
        if use_market:
            # Market warm-up was applied on market rows; a stale or missing market day stays NaN.
            table = np.ascontiguousarray(by_date)
            parts = np.linspace(0, table.shape[1], min(threads, table.shape[1]) + 1).astype(np.int64)
            _run(
                [(kernels.scatter_rows, out, int(m0), table, date_codes, int(f0), int(f1)) for f0, f1 in zip(parts[:-1], parts[1:], strict=True)],
                threads,
            )
        else:
            out[m0 : m0 + len(_MARKET_NAMES)] = np.nan
    return out


def _cross_section_into(out, frame, ticker_codes, ticker_names, sectors, families, layout) -> None:
    """Fill the cross-sectional features of ``out`` (rows of ``frame``): per date, over the tickers
    ``frame`` has on it, from the per-ticker values already in ``out``."""
    if "cross_section" not in families or not len(frame):
        return
    if not out.flags.c_contiguous:  # one layout, one compiled signature (filled in place: never copied)
        raise ValueError("the feature matrix must be C-contiguous")
    _, _, _, cs_src, cs_kind, cs_dst = layout
    date_codes, unique_dates = pd.factorize(frame["date"].to_numpy(), sort=True)
    sector_codes, n_sectors = _sector_codes(frame, ticker_codes, ticker_names, sectors)
    order, date_starts = kernels.group_rows(date_codes.astype(np.int64), len(unique_dates))
    threads = _threads()
    _run(
        [
            (kernels.cross_section, out, cs_src, cs_kind, cs_dst, order, date_starts, sector_codes, int(n_sectors), d0, d1)
            for d0, d1 in _spans(date_starts, threads)
        ],
        threads,
    )


def _coded_holes(holes: pd.DataFrame | None, ticker_names: np.ndarray) -> pd.DataFrame | None:
    """Holes with the ticker replaced by its code in ``ticker_names`` (the kernel's ticker key)."""
    if holes is None or holes.empty:
        return None
    code = pd.Series(np.arange(len(ticker_names)), index=pd.Index(ticker_names))
    h = holes[holes["ticker"].isin(code.index)]
    return pd.DataFrame({"ticker": code.loc[h["ticker"]].to_numpy(), "date": pd.to_datetime(h["date"]).to_numpy()})


def row_positions(prices: pd.DataFrame, holes: pd.DataFrame | None = None) -> np.ndarray:
    """Per row of ``prices`` sorted by (ticker, date): its row index since the ticker's start or its last hole.

    The warm-up axis of the per-ticker features (``warmup_violations(positions=...)``).
    """
    frame, codes, names = _prepare(prices)
    starts = segment_starts(codes, frame["date"].to_numpy(), _coded_holes(holes, names))
    seg = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    return np.arange(len(frame)) - first[seg]


# ------------------------------------------------------------------------------------ incremental


def compute_features_since(
    prices: pd.DataFrame, since, market: pd.DataFrame | None = None, sectors: pd.DataFrame | None = None, holes: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Features of the rows dated >= ``since`` only, from each ticker's last ``MAX_LOOKBACK`` rows before.

    Equal to ``compute_features(prices, ...)`` restricted to those rows: every per-ticker feature
    reads at most ``MAX_LOOKBACK`` rows back (recursive filters have forgotten their seed by then),
    market features are computed on the (small) market table, and cross-sectional features see
    every ticker that has a row on the date.
    """
    frame, ticker_codes, _ = _prepare(prices)
    since = pd.Timestamp(since)
    new = frame["date"].to_numpy() >= np.datetime64(since, "ns")
    # Index of each ticker's first new row (rows are sorted by ticker, then date); keep the
    # MAX_LOOKBACK rows before it.
    row = np.arange(len(frame))
    first_new = pd.Series(np.where(new, row, np.iinfo(np.int64).max)).groupby(ticker_codes).transform("min")
    keep = row >= first_new.to_numpy() - MAX_LOOKBACK
    part = compute_features(frame[keep], market, sectors, holes=holes)
    return part[part["date"] >= since].reset_index(drop=True)


MIN_BLOCK_DAYS = MAX_LOOKBACK // 2


def block_days(days: np.ndarray, tickers: int, max_rows: int) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Consecutive (first, last) runs of ``days`` holding about ``max_rows`` rows at ``tickers`` names each.

    A block is never shorter than ``MIN_BLOCK_DAYS`` (``MAX_LOOKBACK // 2``) days, so the look-back
    rows each ticker reads before a block's first day (up to ``MAX_LOOKBACK``) cost at most twice
    its own rows again: the arithmetic is bounded, and the block's rows grow with the names only
    where ``tickers * MIN_BLOCK_DAYS`` exceeds ``max_rows`` (from about 1,500 names at 250,000 rows).
    """
    days = np.unique(np.asarray(days, dtype="datetime64[ns]"))
    if not len(days):
        return []
    per = max(int(np.ceil(max_rows / max(tickers, 1))), MIN_BLOCK_DAYS)
    return [(pd.Timestamp(days[i]), pd.Timestamp(days[min(i + per, len(days)) - 1])) for i in range(0, len(days), per)]


def _ticker_groups(lengths: np.ndarray, max_rows: int) -> np.ndarray:
    """Group number of each ticker (in order): consecutive tickers holding at most ``max_rows`` rows
    together, and at least one ticker per group."""
    group = np.zeros(len(lengths), dtype=np.int64)
    total = 0
    for i, n in enumerate(lengths.tolist()):
        if total and total + n > max_rows:
            group[i:] += 1
            total = 0
        total += n
    return group


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``starts[k] .. starts[k] + lengths[k] - 1`` of every k, concatenated."""
    return np.repeat(starts - np.cumsum(np.concatenate([[0], lengths[:-1]])), lengths) + np.arange(lengths.sum())


def feature_blocks(
    prices: pd.DataFrame,
    first,
    market: pd.DataFrame | None = None,
    sectors: pd.DataFrame | None = None,
    holes: pd.DataFrame | None = None,
    max_rows: int = 1_000_000,
):
    """The features of the rows dated >= ``first``, as consecutive blocks of trading days.

    Yields ``(block_first, block_last, features, rows)`` per block, in date order: ``features`` equals
    ``compute_features_since(prices, first, ...)`` restricted to the block's days (tested), ``rows``
    the positions in ``prices`` (sorted by (ticker, date)) of the block's rows. A block's per-ticker
    and market features are computed for groups of whole tickers of at most ``max_rows`` rows each
    (a ticker's rows in the block and its ``MAX_LOOKBACK`` rows before), and its cross-section once,
    over every ticker of its days: a history of any length and breadth is computed in memory
    proportional to ``max_rows`` and the block (see ``block_days``), not to the panel.
    """
    frame, codes, names = _prepare(prices)
    dates = frame["date"].to_numpy()
    new = np.flatnonzero(dates >= np.datetime64(pd.Timestamp(first), "ns"))
    if not len(new):
        return
    families = FAMILIES
    layout = _layout(families)
    # Rows are sorted by (ticker, date): a (ticker, day) key is sorted too, and one searchsorted per
    # block finds each ticker's first row dated >= a and its last dated <= b.
    all_days, day_of_row = np.unique(dates, return_inverse=True)
    n_days = len(all_days) + 1
    key = codes * n_days + day_of_row
    tickers = np.arange(int(codes.max()) + 1 if len(codes) else 0, dtype=np.int64)
    start = np.searchsorted(key, tickers * n_days)
    n_tickers = int(np.unique(codes[new]).size)
    for a, b in block_days(dates[new], n_tickers, max_rows):
        lo = np.datetime64(a, "ns")
        # Each ticker's rows up to b, from MAX_LOOKBACK rows before its first row dated >= a.
        first_new = np.searchsorted(key, tickers * n_days + np.searchsorted(all_days, lo))
        last_in = np.searchsorted(key, tickers * n_days + np.searchsorted(all_days, np.datetime64(b, "ns"), side="right"))
        take_from = np.maximum(first_new - MAX_LOOKBACK, start)
        has = last_in > first_new
        take_from, first_new, last_in = take_from[has], first_new[has], last_in[has]
        group = _ticker_groups(last_in - take_from, max_rows)
        parts = []
        for g in range(int(group[-1]) + 1 if len(group) else 0):
            sel = group == g
            idx = _ranges(take_from[sel], (last_in - take_from)[sel])
            sub, sub_codes, sub_names = _prepare(frame.iloc[idx])
            out = _per_ticker_out(sub, sub_codes, sub_names, market, families, layout, holes)
            parts.append(np.compress(dates[idx] >= lo, out, axis=1))  # C-contiguous, as ``out[:, mask]`` is not
        out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        del parts
        rows = _ranges(first_new, last_in - first_new)
        block, block_codes, block_names = _prepare(frame.iloc[rows])
        _cross_section_into(out, block, block_codes, block_names, sectors, families, layout)
        yield a, b, _as_frame(out, layout[0], block), rows  # a fresh RangeIndex: no reset (a copy)


def update_features(
    stored: pd.DataFrame, prices: pd.DataFrame, market: pd.DataFrame | None = None, sectors: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, int]:
    """Append the features of the days after ``stored``'s last date: (full matrix, new rows).

    Raises ``ValueError`` when ``stored`` cannot be extended (other columns, or rows the prices no
    longer have); the caller then recomputes in full.
    """
    if list(stored.columns) != ["ticker", "date", *FEATURE_NAMES]:
        raise ValueError("stored feature matrix has other columns than the registry")
    if stored.empty:
        raise ValueError("no stored feature matrix")
    stored = stored.assign(date=pd.to_datetime(stored["date"]).astype("datetime64[ns]"))
    stored = stored.sort_values(["ticker", "date"], kind="mergesort").reset_index(drop=True)
    last = pd.Timestamp(stored["date"].max())
    frame = _prepare_prices(prices)
    old = frame[frame["date"] <= last]
    if (
        len(old) != len(stored)
        or not (old["ticker"].to_numpy() == stored["ticker"].to_numpy()).all()
        or not (old["date"].to_numpy() == stored["date"].to_numpy()).all()
    ):
        raise ValueError("stored feature matrix does not match the price history up to its last date")
    new = compute_features_since(frame, last + pd.Timedelta(days=1), market, sectors)
    if new.empty:
        return stored, 0
    merged = pd.concat([stored, new], ignore_index=True)
    merged = merged.sort_values(["ticker", "date"], kind="mergesort").reset_index(drop=True)
    return merged, len(new)


def history_fingerprint(prices: pd.DataFrame, market: pd.DataFrame | None, until) -> str:
    """Hash of the prices and market rows dated <= ``until`` and of ``ENGINE_VERSION``.

    A stored matrix may be extended only while this is unchanged: a revised past price, a revised
    market value or a new engine version all mean a full recompute.
    """
    until = np.datetime64(pd.Timestamp(until), "ns")
    frame = _prepare_prices(prices)
    digest = hashlib.sha256(ENGINE_VERSION.encode())
    part = frame.loc[frame["date"].to_numpy() <= until, ["ticker", "date", *PRICE_COLUMNS]]
    digest.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
    if market is not None:
        m = market[["date", *MARKET_COLUMNS]]
        m = m[pd.to_datetime(m["date"]).to_numpy(dtype="datetime64[ns]") <= until].sort_values("date")
        digest.update(pd.util.hash_pandas_object(m.astype({"date": "datetime64[ns]"}), index=False).to_numpy().tobytes())
    return digest.hexdigest()[:24]


# ------------------------------------------------------------------------------------- validation


def warmup_violations(features: pd.DataFrame, prior_rows: pd.Series | None = None, positions: np.ndarray | None = None) -> pd.DataFrame:
    """List (ticker, date, feature) rows where a feature is non-finite at or after its warm-up.

    ``prior_rows`` (per ticker) counts each ticker's rows before ``features``' first, when
    ``features`` is a slice of days (a partition) rather than each ticker's whole history.
    ``positions`` (per row of ``features`` in (ticker, date) order) gives each row's warm-up position
    directly (``row_positions``: a quarantined hole restarts it).

    The warm-up is checked on the ticker's row index for every feature (for market features this
    holds when the market calendar covers the stock's). Optional-input features
    (``MARKET_FEATURES``, ``SECTOR_FEATURES``) that are NaN on every row are skipped: their input
    was not supplied.
    """
    empty = pd.DataFrame({"ticker": pd.Series(dtype=object), "date": pd.Series(dtype="datetime64[ns]"), "feature": pd.Series(dtype=object)})
    if features.empty:
        return empty
    frame = features
    codes, _ = pd.factorize(frame["ticker"])
    d = frame["date"].to_numpy().view(np.int64)
    step = np.diff(codes)
    if len(frame) > 1 and not ((step >= 0).all() and (np.diff(d)[step == 0] > 0).all()):  # sorted input is not copied
        frame = features.sort_values(["ticker", "date"], kind="mergesort").reset_index(drop=True)
    pos = frame.groupby("ticker", sort=False).cumcount().to_numpy()
    if positions is not None:
        pos = np.asarray(positions)
    elif prior_rows is not None:
        pos = pos + frame["ticker"].map(prior_rows).fillna(0).to_numpy(dtype=np.int64)
    tickers = frame["ticker"].to_numpy()
    dates = frame["date"].to_numpy()
    parts = []
    for spec in FEATURE_REGISTRY:
        if spec.name not in frame.columns:
            continue
        values = frame[spec.name].to_numpy(dtype=np.float64)
        optional = spec.name in MARKET_FEATURES or spec.name in SECTOR_FEATURES
        if optional and np.isnan(values).all():
            continue
        bad = np.flatnonzero((pos >= spec.lookback) & ~np.isfinite(values))
        if bad.size:
            parts.append(pd.DataFrame({"ticker": tickers[bad], "date": dates[bad], "feature": spec.name}))
    if not parts:
        return empty
    return pd.concat(parts, ignore_index=True)
