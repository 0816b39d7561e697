"""Per-(ticker, date) model features, each computed strictly from data dated on or before that date.

Layout
------
``compute_features(prices, market=None, sectors=None)`` returns one row per input (ticker, date),
sorted by (ticker, date) with a fresh RangeIndex: ``ticker``, ``date``, then one float32 column per
feature in ``FEATURE_NAMES`` (= ``FEATURE_REGISTRY``) order.

No look-ahead
-------------
Every value at (ticker, t) uses only that ticker's rows dated <= t. Windows are trailing, recursive
filters run forward, running extremes are expanding maxima up to t, and nothing is normalised over
the full sample. Cross-sectional features use only the other tickers' values on the same date t,
which themselves obey the rule. Market series are computed on the market rows alone and joined
"as of" the stock date (the last market row dated <= t, at most ``MARKET_ASOF_TOLERANCE`` old).

Warm-up
-------
``FeatureSpec.lookback`` is the number of leading rows without a value: for per-ticker features the
value is NaN where the ticker's row index (0-based, in date order) is < lookback and finite from
there on. Recursive filters (EMA, Wilder) give numbers from their first row, so they are seeded with
a simple mean of their first window and masked explicitly. For the ``market`` family the lookback
counts rows of the market series instead (a stock listed in 2005 gets a 250-day VIX rank from its
first day; a stock row dated before the market history is long enough gets NaN). Degenerate inputs
have defined values instead of inf/NaN: zero range -> candle ratios 0, zero variance -> z-scores 0,
correlations and betas 0, RSI 50, Bollinger %B 0.5, stochastic 50; zero volume goes through log1p.

Optional inputs
---------------
``market is None``: every feature in ``MARKET_FEATURES`` (the ``market`` family plus beta and
correlation to the S&P 500) is NaN. ``sectors is None`` (or a ticker missing from it): every
feature in ``SECTOR_FEATURES`` is NaN for the affected rows. ``warmup_violations`` skips a column of
these sets that is NaN on every row, since that means the optional input was not supplied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
MARKET_COLUMNS = ("spx_close", "vix_close", "dgs10")
# A stock row takes the last market row dated <= its date, but never one older than this: a market
# feed that stops early yields NaN (reported by warmup_violations) rather than stale values.
MARKET_ASOF_TOLERANCE = pd.Timedelta(days=10)

RETURN_WINDOWS = (1, 2, 3, 5, 10, 20, 60, 120, 250)
VOLATILITY_WINDOWS = (5, 10, 20, 60)
RSI_WINDOWS = (6, 14, 28)
SMA_WINDOWS = (5, 10, 20, 60, 120, 250)
EXTREME_WINDOWS = (20, 60)
SPX_RETURN_WINDOWS = (1, 5, 20)

# Below this daily-return variance (std 1e-7) the S&P 500 is treated as flat: beta is then 0,
# like a correlation with a zero-variance series, instead of a cov / ~0 blow-up.
_FLAT_RETURN_VAR = 1e-14


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: column name, family, one-line definition and warm-up length in rows."""

    name: str  # snake_case column name
    family: str  # returns, candle, volatility, momentum, trend, rolling, volume, market, ...
    definition: str  # one-line human definition
    lookback: int  # row index < lookback -> NaN; >= lookback -> finite


def _build_registry() -> tuple[FeatureSpec, ...]:
    """Every feature in output column order; the compute functions below must match it exactly."""
    specs: list[FeatureSpec] = []

    def add(name: str, family: str, definition: str, lookback: int) -> None:
        specs.append(FeatureSpec(name, family, definition, lookback))

    for k in RETURN_WINDOWS:
        add(f"ret_{k}", "returns", f"simple return over {k} rows: close / close[t-{k}] - 1", k)
    add("gap_overnight", "returns", "overnight gap: open / previous close - 1", 1)

    add("candle_body", "candle", "(close - open) / (high - low); 0 when high == low", 0)
    add("candle_upper_shadow", "candle", "(high - max(open, close)) / range; 0 if no range", 0)
    add("candle_lower_shadow", "candle", "(min(open, close) - low) / range; 0 if no range", 0)
    add("candle_range", "candle", "(high - low) / close", 0)

    for w in VOLATILITY_WINDOWS:
        add(f"volatility_{w}", "volatility", f"std (ddof 1) of daily returns over {w} rows", w)
    add("volatility_ratio_5_20", "volatility", "volatility_5 / volatility_20; 1 if both 0", 20)
    add("volatility_ratio_20_60", "volatility", "volatility_20 / volatility_60; 1 if both 0", 60)
    add("parkinson_vol_20", "volatility", "sqrt(mean(ln(high/low)^2) / (4 ln 2)) over 20 rows", 19)
    add(
        "garman_klass_vol_20",
        "volatility",
        "sqrt(max(0, mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2))) over 20 rows",
        19,
    )
    add("atr_14_rel", "volatility", "Wilder ATR(14) of the true range, divided by close", 14)
    add("bb_pct_b_20", "volatility", "Bollinger %B (20, 2 population std); 0.5 when std is 0", 19)
    add("bb_width_20", "volatility", "Bollinger band width (upper - lower) / SMA20", 19)

    for n in RSI_WINDOWS:
        add(f"rsi_{n}", "momentum", f"Wilder RSI({n}) in 0..100, SMA-seeded; 50 when flat", n)
    add("stoch_k_14", "momentum", "100 (close - low14) / (high14 - low14); 50 if no range", 13)
    add("stoch_d_3", "momentum", "3-row SMA of stoch_k_14", 15)
    add("williams_r_14", "momentum", "-100 (high14 - close) / (high14 - low14); -50 if flat", 13)
    add("cci_20", "momentum", "(TP - SMA20) / (0.015 mean abs dev), TP = (H+L+C)/3; 0 if flat", 19)

    add("macd", "trend", "(EMA12 - EMA26) of close (SMA-seeded) / close", 25)
    add("macd_signal", "trend", "EMA9 of the MACD line (SMA-seeded) / close", 33)
    add("macd_hist", "trend", "(MACD line - signal) / close", 33)
    for w in SMA_WINDOWS:
        add(f"close_to_sma_{w}", "trend", f"close / SMA{w}(close) - 1", w - 1)

    for w in EXTREME_WINDOWS:
        add(f"dist_max_{w}", "rolling", f"close / max(close over {w} rows) - 1", w - 1)
        add(f"dist_min_{w}", "rolling", f"close / min(close over {w} rows) - 1", w - 1)
    add("up_share_20", "rolling", "share of the last 20 daily returns that are > 0", 20)
    add("pv_corr_20", "rolling", "corr(close, log1p(volume)) over 20 rows; 0 if either is flat", 19)

    add("volume_ma_ratio_5_20", "volume", "log1p(SMA5(volume)) - log1p(SMA20(volume))", 19)
    add("volume_z_20", "volume", "(volume - SMA20) / std20 (ddof 1); 0 when std is 0", 19)
    add("dollar_volume_log_20", "volume", "log1p(SMA20(close * volume))", 19)
    add("obv_change_20", "volume", "20-row change of OBV / SMA20(volume); 0 with no volume", 20)

    # Market family: lookback counts rows of the market series, not of the ticker.
    add("vix_level", "market", "VIX close", 0)
    add("vix_change_5", "market", "VIX close - VIX close 5 market rows back (points)", 5)
    add("vix_rank_250", "market", "percentile rank of today's VIX among the last 250 (0..1]", 249)
    for k in SPX_RETURN_WINDOWS:
        add(f"spx_ret_{k}", "market", f"S&P 500 simple return over {k} market rows", k)
    add("spx_drawdown", "market", "S&P 500 close / its running maximum up to t - 1", 0)
    add("spx_volatility_20", "market", "std (ddof 1) of S&P 500 daily returns over 20 rows", 20)
    add("dgs10_level", "market", "10-year Treasury yield (percent)", 0)
    add("dgs10_change_20", "market", "10-year yield - its value 20 market rows back (points)", 20)

    add("beta_spx_60", "beta", "cov(stock, S&P 500 returns) / var(S&P 500) over 60 rows", 60)
    add("corr_spx_60", "beta", "corr(stock, S&P 500 daily returns) over 60 rows", 60)

    add("cs_rank_ret_20", "cross_section", "percentile rank of ret_20 among tickers that day", 20)
    add("cs_rank_volatility_20", "cross_section", "percentile rank of volatility_20 that day", 20)
    add("sector_rel_ret_20", "cross_section", "ret_20 - mean ret_20 of its GICS sector that day", 20)
    return tuple(specs)


FEATURE_REGISTRY: tuple[FeatureSpec, ...] = _build_registry()
FEATURE_NAMES: list[str] = [s.name for s in FEATURE_REGISTRY]
MAX_LOOKBACK: int = max(s.lookback for s in FEATURE_REGISTRY)
_SPECS_BY_NAME = {s.name: s for s in FEATURE_REGISTRY}
MARKET_FEATURES: frozenset[str] = frozenset(s.name for s in FEATURE_REGISTRY if s.family in ("market", "beta"))
SECTOR_FEATURES: frozenset[str] = frozenset({"sector_rel_ret_20"})


def feature_spec(name: str) -> FeatureSpec:
    """Return the registry entry of feature ``name`` (KeyError if unknown)."""
    try:
        return _SPECS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}") from None


# --------------------------------------------------------------------------------------------------
# numerical helpers


def _div(num: np.ndarray, den: np.ndarray, fill: float = np.nan, tol: float = 0.0) -> np.ndarray:
    """num / den, with ``fill`` where |den| <= tol (a defined degenerate value, never inf)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(num, den)
    # NaN inputs stay NaN (warm-up), only a genuinely (near-)zero denominator takes ``fill``.
    degenerate = (np.abs(den) <= tol) & ~np.isnan(num)
    return np.where(degenerate, fill, out)


def _log(x: np.ndarray) -> np.ndarray:
    """Natural log; NaN (not -inf) for non-positive input, so bad data is reported, not hidden."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)


class _Panel:
    """Row-aligned operations on arrays sorted by (group, date); no window ever spans two groups."""

    def __init__(self, codes: np.ndarray) -> None:
        self.codes = np.asarray(codes)
        self.n = len(self.codes)
        is_start = np.ones(self.n, dtype=bool)
        is_start[1:] = self.codes[1:] != self.codes[:-1]
        starts = np.flatnonzero(is_start)
        lengths = np.diff(np.append(starts, self.n))
        # 0-based row index inside the group: the axis every lookback is measured on.
        self.pos = np.arange(self.n) - np.repeat(starts, lengths)

    def shift(self, x: np.ndarray, k: int) -> np.ndarray:
        """Value k rows earlier in the same group (NaN for the first k rows of each group)."""
        out = np.full(self.n, np.nan)
        if k < self.n:
            out[k:] = x[: self.n - k]
        out[self.pos < k] = np.nan  # rows whose k-back neighbour belongs to the previous group
        return out

    def rolling(self, x: np.ndarray, window: int, stat: str, **kwargs: object) -> np.ndarray:
        """Trailing ``window``-row statistic per group (needs a full window, else NaN)."""
        # groupby-rolling restarts its running sums at each group start, so one ticker's rows
        # (including floating-point residue) never leak into the next ticker's windows.
        grouped = pd.Series(x, copy=False).groupby(self.codes, sort=False)
        result = getattr(grouped.rolling(window, min_periods=window), stat)(**kwargs)
        return result.to_numpy(dtype=np.float64)  # groups are contiguous: order == input order

    def seeded_ewm(self, x: np.ndarray, window: int, alpha: float, first: int) -> np.ndarray:
        """EMA/Wilder filter per group, seeded with the SMA of its first ``window`` valid values.

        ``x`` must be finite from group row ``first`` on; the output is finite from row
        ``first + window - 1`` and NaN before (explicitly masked).
        """
        seed_at = first + window - 1
        seed = self.rolling(x, window, "mean")
        y = np.where(self.pos == seed_at, seed, np.where(self.pos > seed_at, x, np.nan))
        grouped = pd.Series(y, copy=False).groupby(self.codes, sort=False)
        out = grouped.ewm(alpha=alpha, adjust=False).mean().to_numpy(dtype=np.float64)
        out[self.pos < seed_at] = np.nan
        return out

    def window_apply(self, x: np.ndarray, window: int, func: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``func`` over each trailing window as a (rows, window) view; exact, stateless."""
        out = np.full(self.n, np.nan)
        if self.n >= window:
            out[window - 1 :] = func(sliding_window_view(x, window))
        out[self.pos < window - 1] = np.nan  # those windows reach into the previous group
        return out

    def corr_cov(self, x: np.ndarray, y: np.ndarray, window: int) -> tuple[np.ndarray, ...]:
        """Trailing population covariance, var(x), var(y) per group."""
        vx = self.rolling(x, window, "var", ddof=0)
        vy = self.rolling(y, window, "var", ddof=0)
        # cov from var(x + y): built on pandas' Welford variance, which is exact (0) on flat
        # windows and avoids the E[xy] - E[x]E[y] cancellation on price-level series.
        vsum = self.rolling(x + y, window, "var", ddof=0)
        return (vsum - vx - vy) / 2.0, vx, vy

    def corr(self, x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
        """Trailing Pearson correlation per group; 0 when either side has zero variance."""
        cov, vx, vy = self.corr_cov(x, y, window)
        return np.clip(_div(cov, np.sqrt(vx * vy), fill=0.0), -1.0, 1.0)


# --------------------------------------------------------------------------------------------------
# feature families (each returns {name: float64 array aligned with the sorted panel})


def _price_features(p: _Panel, o: np.ndarray, hi: np.ndarray, lo: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    """Returns, candles, volatility, momentum, trend and rolling-position features."""
    f: dict[str, np.ndarray] = {}
    prev_close = p.shift(c, 1)
    for k in RETURN_WINDOWS:
        f[f"ret_{k}"] = _div(c, p.shift(c, k)) - 1.0
    r1 = f["ret_1"]
    f["gap_overnight"] = _div(o, prev_close) - 1.0

    rng = hi - lo
    f["candle_body"] = _div(c - o, rng, fill=0.0)
    f["candle_upper_shadow"] = _div(hi - np.maximum(o, c), rng, fill=0.0)
    f["candle_lower_shadow"] = _div(np.minimum(o, c) - lo, rng, fill=0.0)
    f["candle_range"] = _div(rng, c)

    vol = {w: p.rolling(r1, w, "std") for w in VOLATILITY_WINDOWS}
    for w in VOLATILITY_WINDOWS:
        f[f"volatility_{w}"] = vol[w]
    # A zero long-window vol implies a zero short-window vol (subset window): ratio 1, "no change".
    f["volatility_ratio_5_20"] = _div(vol[5], vol[20], fill=1.0)
    f["volatility_ratio_20_60"] = _div(vol[20], vol[60], fill=1.0)
    log_hl = _log(_div(hi, lo))
    log_co = _log(_div(c, o))
    f["parkinson_vol_20"] = np.sqrt(p.rolling(log_hl**2, 20, "mean") / (4.0 * np.log(2.0)))
    gk_term = 0.5 * log_hl**2 - (2.0 * np.log(2.0) - 1.0) * log_co**2
    # The GK estimator can go (slightly) negative on tiny ranges; variance is floored at 0.
    f["garman_klass_vol_20"] = np.sqrt(np.maximum(p.rolling(gk_term, 20, "mean"), 0.0))

    true_range = np.fmax(rng, np.fmax(np.abs(hi - prev_close), np.abs(lo - prev_close)))
    true_range[p.pos < 1] = np.nan  # the textbook TR needs a previous close
    f["atr_14_rel"] = _div(p.seeded_ewm(true_range, 14, 1.0 / 14.0, first=1), c)

    sma20 = p.rolling(c, 20, "mean")
    sd20 = p.rolling(c, 20, "std", ddof=0)
    f["bb_pct_b_20"] = _div(c - (sma20 - 2.0 * sd20), 4.0 * sd20, fill=0.5)
    f["bb_width_20"] = _div(4.0 * sd20, sma20)

    diff = c - prev_close
    gain = np.where(np.isnan(diff), np.nan, np.maximum(diff, 0.0))
    loss = np.where(np.isnan(diff), np.nan, np.maximum(-diff, 0.0))
    for n in RSI_WINDOWS:
        avg_gain = p.seeded_ewm(gain, n, 1.0 / n, first=1)
        avg_loss = p.seeded_ewm(loss, n, 1.0 / n, first=1)
        # 100 - 100 / (1 + G/L) rewritten as 100 G / (G + L): exact 100 when L == 0, 50 when flat.
        f[f"rsi_{n}"] = _div(100.0 * avg_gain, avg_gain + avg_loss, fill=50.0)

    high14 = p.rolling(hi, 14, "max")
    low14 = p.rolling(lo, 14, "min")
    f["stoch_k_14"] = _div(100.0 * (c - low14), high14 - low14, fill=50.0)
    f["stoch_d_3"] = p.rolling(f["stoch_k_14"], 3, "mean")
    f["williams_r_14"] = _div(-100.0 * (high14 - c), high14 - low14, fill=-50.0)

    typical = (hi + lo + c) / 3.0

    def cci(windows: np.ndarray) -> np.ndarray:
        mean = windows.mean(axis=1)
        mad = np.abs(windows - mean[:, None]).mean(axis=1)
        return _div(windows[:, -1] - mean, 0.015 * mad, fill=0.0)

    f["cci_20"] = p.window_apply(typical, 20, cci)

    ema12 = p.seeded_ewm(c, 12, 2.0 / 13.0, first=0)
    ema26 = p.seeded_ewm(c, 26, 2.0 / 27.0, first=0)
    macd_line = ema12 - ema26
    signal = p.seeded_ewm(macd_line, 9, 2.0 / 10.0, first=25)
    f["macd"] = _div(macd_line, c)
    f["macd_signal"] = _div(signal, c)
    f["macd_hist"] = _div(macd_line - signal, c)
    for w in SMA_WINDOWS:
        f[f"close_to_sma_{w}"] = _div(c, sma20 if w == 20 else p.rolling(c, w, "mean")) - 1.0

    for w in EXTREME_WINDOWS:
        f[f"dist_max_{w}"] = _div(c, p.rolling(c, w, "max")) - 1.0
        f[f"dist_min_{w}"] = _div(c, p.rolling(c, w, "min")) - 1.0
    up = np.where(np.isnan(r1), np.nan, (r1 > 0).astype(np.float64))
    f["up_share_20"] = p.rolling(up, 20, "mean")
    return f


def _volume_features(p: _Panel, c: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Volume features; zero volume is legal (log1p and guarded ratios)."""
    f: dict[str, np.ndarray] = {}
    f["pv_corr_20"] = p.corr(c, np.log1p(v), 20)
    ma5 = p.rolling(v, 5, "mean")
    ma20 = p.rolling(v, 20, "mean")
    f["volume_ma_ratio_5_20"] = np.log1p(ma5) - np.log1p(ma20)
    f["volume_z_20"] = _div(v - ma20, p.rolling(v, 20, "std"), fill=0.0)
    f["dollar_volume_log_20"] = np.log1p(p.rolling(c * v, 20, "mean"))
    # OBV_t - OBV_{t-20} is the sum of the last 20 signed volumes: no cumsum drift.
    signed = np.sign(c - p.shift(c, 1)) * v
    f["obv_change_20"] = _div(p.rolling(signed, 20, "sum"), ma20, fill=0.0)
    return f


def _market_series(market: pd.DataFrame, column: str) -> pd.DataFrame:
    """``date, value`` of one market column: non-missing rows only, sorted by date."""
    s = market[["date", column]].dropna()
    s = s.sort_values("date", kind="mergesort").reset_index(drop=True)
    s["date"] = pd.to_datetime(s["date"]).astype("datetime64[ns]")
    return s.rename(columns={column: "value"})


def _market_tables(market: pd.DataFrame) -> list[pd.DataFrame]:
    """Market features on each series' own rows (its row index is their warm-up axis)."""
    missing = [col for col in ("date", *MARKET_COLUMNS) if col not in market.columns]
    if missing:
        raise ValueError(f"market frame lacks columns {missing}")
    if market["date"].duplicated().any():
        raise ValueError("market frame must have one row per date")
    tables = []

    spx = _market_series(market, "spx_close")
    mp = _Panel(np.zeros(len(spx), dtype=np.int64))
    s = spx["value"].to_numpy(dtype=np.float64)
    f: dict[str, np.ndarray] = {}
    for k in SPX_RETURN_WINDOWS:
        f[f"spx_ret_{k}"] = _div(s, mp.shift(s, k)) - 1.0
    # Drawdown against the expanding maximum up to t only: never the full-sample peak.
    f["spx_drawdown"] = _div(s, np.maximum.accumulate(s)) - 1.0
    f["spx_volatility_20"] = mp.rolling(f["spx_ret_1"], 20, "std")
    tables.append(_mask_market(spx, mp, f))

    vix = _market_series(market, "vix_close")
    mp = _Panel(np.zeros(len(vix), dtype=np.int64))
    x = vix["value"].to_numpy(dtype=np.float64)
    f = {"vix_level": x.copy(), "vix_change_5": x - mp.shift(x, 5)}
    rank = pd.Series(x).rolling(250, min_periods=250).rank(pct=True)
    f["vix_rank_250"] = rank.to_numpy(dtype=np.float64)
    tables.append(_mask_market(vix, mp, f))

    dgs = _market_series(market, "dgs10")
    mp = _Panel(np.zeros(len(dgs), dtype=np.int64))
    x = dgs["value"].to_numpy(dtype=np.float64)
    f = {"dgs10_level": x.copy(), "dgs10_change_20": x - mp.shift(x, 20)}
    tables.append(_mask_market(dgs, mp, f))

    tables.append(spx.rename(columns={"value": "_spx_close"}))  # for beta / correlation
    return tables


def _mask_market(series: pd.DataFrame, mp: _Panel, f: dict[str, np.ndarray]) -> pd.DataFrame:
    """Market feature table with warm-up applied on market rows."""
    table = pd.DataFrame({"date": series["date"].to_numpy()})
    for name, values in f.items():
        table[name] = np.where(mp.pos < _SPECS_BY_NAME[name].lookback, np.nan, values)
    return table


def _join_asof(dates: np.ndarray, tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Each table's last row dated <= each date (within the tolerance), aligned with ``dates``."""
    unique_dates, inverse = np.unique(dates, return_inverse=True)
    left = pd.DataFrame({"date": unique_dates.astype("datetime64[ns]")})
    for table in tables:
        left = pd.merge_asof(left, table, on="date", direction="backward", tolerance=MARKET_ASOF_TOLERANCE)
    return left.iloc[inverse].reset_index(drop=True)


def _market_features(p: _Panel, dates: np.ndarray, r1: np.ndarray, market: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """Market-series features joined by date, plus the stock's beta and correlation to the S&P."""
    names = [n for n in FEATURE_NAMES if n in MARKET_FEATURES]
    if market is None:
        return {n: np.full(p.n, np.nan) for n in names}
    joined = _join_asof(dates, _market_tables(market))
    f = {n: joined[n].to_numpy(dtype=np.float64) for n in names if n in joined.columns}
    # S&P return over the same interval as the stock's ret_1 (previous stock row -> t), so a
    # missing stock day compares like with like.
    spx = joined["_spx_close"].to_numpy(dtype=np.float64)
    spx_r1 = _div(spx, p.shift(spx, 1)) - 1.0
    cov, _, var_m = p.corr_cov(r1, spx_r1, 60)
    f["beta_spx_60"] = _div(cov, var_m, fill=0.0, tol=_FLAT_RETURN_VAR)
    f["corr_spx_60"] = p.corr(r1, spx_r1, 60)
    return f


def _cross_section_features(
    date_codes: np.ndarray,
    tickers: np.ndarray,
    f: dict[str, np.ndarray],
    sectors: pd.DataFrame | None,
) -> dict[str, np.ndarray]:
    """Per-date ranks and sector-relative return: same-date values only."""
    out: dict[str, np.ndarray] = {}
    for name, source in (("cs_rank_ret_20", "ret_20"), ("cs_rank_volatility_20", "volatility_20")):
        # Rank among tickers whose value exists on that date; NaN (warm-up) stays NaN.
        ranked = pd.Series(f[source]).groupby(date_codes, sort=False).rank(pct=True)
        out[name] = ranked.to_numpy(dtype=np.float64)
    ret20 = pd.Series(f["ret_20"])
    if sectors is None:
        out["sector_rel_ret_20"] = np.full(len(ret20), np.nan)
    else:
        if not {"ticker", "gics_sector"} <= set(sectors.columns):
            raise ValueError("sectors frame needs columns ticker and gics_sector")
        mapping = sectors.drop_duplicates("ticker", keep="last").set_index("ticker")["gics_sector"]
        sector = pd.Series(tickers).map(mapping)
        sector_mean = ret20.groupby([date_codes, sector.to_numpy()], sort=False).transform("mean")
        out["sector_rel_ret_20"] = (ret20 - sector_mean).to_numpy(dtype=np.float64)
    return out


def _prepare_prices(prices: pd.DataFrame) -> pd.DataFrame:
    """Validated copy sorted by (ticker, date)."""
    missing = [col for col in ("ticker", "date", *PRICE_COLUMNS) if col not in prices.columns]
    if missing:
        raise ValueError(f"prices frame lacks columns {missing}")
    frame = prices[["ticker", "date", *PRICE_COLUMNS]].copy()
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    # A null key would be dropped by groupby and shift every later row out of alignment.
    if frame["ticker"].isna().any() or frame["date"].isna().any():
        raise ValueError("prices have null ticker or date values")
    frame = frame.sort_values(["ticker", "date"], kind="mergesort").reset_index(drop=True)
    if frame.duplicated(["ticker", "date"]).any():
        raise ValueError("prices must have one row per (ticker, date)")
    return frame


def compute_features(
    prices: pd.DataFrame,
    market: pd.DataFrame | None = None,
    sectors: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Compute every registry feature for each (ticker, date) row, using only data up to that date.

    Returns ``ticker, date`` + float32 ``FEATURE_NAMES`` columns, sorted by (ticker, date). Without
    ``market`` the ``MARKET_FEATURES`` are NaN; without ``sectors`` the ``SECTOR_FEATURES`` are NaN.
    """
    frame = _prepare_prices(prices)
    tickers = frame["ticker"].to_numpy()
    dates = frame["date"].to_numpy()
    p = _Panel(pd.factorize(tickers)[0])
    o, hi, lo, c, v = (frame[col].to_numpy(dtype=np.float64) for col in PRICE_COLUMNS)

    f = _price_features(p, o, hi, lo, c)
    f.update(_volume_features(p, c, v))
    f.update(_market_features(p, dates, f["ret_1"], market))
    # Cross-sectional inputs are masked by their own warm-up first, so ranks only see valid values.
    for source in ("ret_20", "volatility_20"):
        f[source] = np.where(p.pos < _SPECS_BY_NAME[source].lookback, np.nan, f[source])
    f.update(_cross_section_features(pd.factorize(dates)[0], tickers, f, sectors))
    if set(f) != set(FEATURE_NAMES):  # registry and code must never drift apart
        raise RuntimeError(f"feature code/registry mismatch: {set(f) ^ set(FEATURE_NAMES)}")

    columns: dict[str, np.ndarray] = {"ticker": tickers, "date": dates}
    for spec in FEATURE_REGISTRY:
        values = f[spec.name]
        if spec.family != "market":  # market warm-up was applied on market rows already
            values = np.where(p.pos < spec.lookback, np.nan, values)
        columns[spec.name] = values.astype(np.float32)
    return pd.DataFrame(columns)


def warmup_violations(features: pd.DataFrame) -> pd.DataFrame:
    """List (ticker, date, feature) rows where a feature is non-finite at or after its warm-up.

    The warm-up is checked on the ticker's row index for every feature (for market features this
    holds when the market calendar covers the stock's). Optional-input features
    (``MARKET_FEATURES``, ``SECTOR_FEATURES``) that are NaN on every row are skipped: their input
    was not supplied.
    """
    empty = pd.DataFrame(
        {
            "ticker": pd.Series(dtype=object),
            "date": pd.Series(dtype="datetime64[ns]"),
            "feature": pd.Series(dtype=object),
        }
    )
    if features.empty:
        return empty
    frame = features.sort_values(["ticker", "date"], kind="mergesort").reset_index(drop=True)
    pos = frame.groupby("ticker", sort=False).cumcount().to_numpy()
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
