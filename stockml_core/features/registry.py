"""The feature registry: every feature's name, family, one-line definition, warm-up and reference.

The order here is the column order of the feature matrix. Each family is one contiguous block;
each per-ticker family has its own numba kernel (``kernels._returns`` for ``returns``, ...) that
writes the block in this order, every write labelled with the features it writes.
``compute_features`` checks each block's count on every call, ``tests/test_features.py`` checks
the kernels' labels against these names, and the parity tests check values feature by feature.

Warm-up (``lookback``)
----------------------
Rows of a ticker (0-based, in date order) before ``lookback`` are NaN; from it on values are finite.
For a window statistic it is the rows the first full window needs. For a recursive filter (EMA,
Wilder smoothing, stacked filters) it is the number of rows after which the filter's seed weighs less
than ``CONVERGED`` (1e-7) in the value: before that the number depends on where the history happens
to start, so it is withheld rather than shown. That is also why the incremental path, which sees only
the last ``MAX_LOOKBACK`` rows of a ticker, reproduces the full recompute. The Parabolic SAR is path
dependent (its state resets at each reversal); it gets the longest warm-up (250 rows, dozens of
reversals on real prices) and the incremental test checks it on the real sample.

Market features count their warm-up on rows of the market series (a stock listed in 2005 gets a
250-day VIX rank from its first day).

``ta`` names the ``ta`` library expression a feature equals (within ``PARITY_RTOL`` after warm-up,
checked by ``tests/test_feature_parity.py``); ``note`` says where and why we deliberately differ.
"""

import math
from dataclasses import dataclass

CONVERGED = 1e-7
WINDOWS = (5, 10, 20, 30, 60)  # Alpha158-style rolling windows
RETURN_WINDOWS = (1, 2, 3, 5, 10, 20, 60, 120, 250)
PARITY_RTOL = 1e-6  # relative tolerance of the ta parity checks (absolute floor in PARITY_ATOL)
PARITY_ATOL = 1e-6

FAMILIES = ("returns", "candle", "volatility", "momentum", "trend", "volume", "rolling", "beta", "market", "cross_section")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: column name, family, one-line definition and warm-up length in rows."""

    name: str
    family: str
    definition: str
    lookback: int
    ta: str = ""  # the ta-library expression this feature equals after warm-up ("" if none)
    note: str = ""  # deliberate differences from ta / textbook definitions

    @property
    def per_ticker(self) -> bool:
        return self.family not in ("market", "cross_section")


def burn_in(alpha: float, stages: int = 1) -> int:
    """Rows until a cascade of ``stages`` first-order filters (pole 1 - alpha) forgets its seed."""
    a = 1.0 - alpha
    k = 0
    while math.comb(k + stages - 1, stages - 1) * a**k >= CONVERGED:
        k += 1
    return k


def _build() -> tuple[FeatureSpec, ...]:
    specs: list[FeatureSpec] = []

    def add(name: str, family: str, definition: str, lookback: int, ta: str = "", note: str = "") -> None:
        specs.append(FeatureSpec(name, family, definition, lookback, ta, note))

    def windowed(family: str, stats: list[tuple[str, str, int]]) -> None:
        """``{prefix}_{w}`` for each stat and each of WINDOWS; warm-up w + offset (w - 1: a full window)."""
        for prefix, definition, offset in stats:
            for w in WINDOWS:
                add(f"{prefix}_{w}", family, definition.format(w=w), w + offset)

    # returns -----------------------------------------------------------------------------------
    for k in RETURN_WINDOWS:
        add(f"ret_{k}", "returns", f"close / close {k} rows back - 1", k, f"ROCIndicator(close, {k}).roc() / 100")
    add("gap_overnight", "returns", "open / previous close - 1", 1)
    add("intraday_ret", "returns", "close / open - 1", 0)
    add("mom_250_20", "returns", "12-1 momentum: close 20 rows back / close 250 rows back - 1", 250)
    # candle -------------------------------------------------------------------------------------
    add("candle_body", "candle", "(close - open) / (high - low); 0 when high == low", 0)
    add("candle_upper_shadow", "candle", "(high - max(open, close)) / (high - low); 0 if no range", 0)
    add("candle_lower_shadow", "candle", "(min(open, close) - low) / (high - low); 0 if no range", 0)
    add("candle_range", "candle", "(high - low) / close", 0)
    add("close_location", "candle", "(close - low) / (high - low); 0.5 if no range", 0)
    # volatility ---------------------------------------------------------------------------------
    for w in (5, 10, 20, 60, 120):
        add(f"volatility_{w}", "volatility", f"std (ddof 1) of daily returns over {w} rows", w)
    for a, b in ((5, 20), (20, 60), (20, 120)):
        add(f"volatility_ratio_{a}_{b}", "volatility", f"volatility_{a} / volatility_{b}; 1 if both 0", b)
    add("downside_vol_20", "volatility", "sqrt(mean(min(return, 0)^2)) over 20 rows", 20)
    add("ret_skew_60", "volatility", "skewness (population moments) of daily returns over 60 rows; 0 if flat", 60)
    add("ret_kurt_60", "volatility", "excess kurtosis (population moments) of daily returns over 60 rows; 0 if flat", 60)
    for w in (10, 20, 60):
        add(f"parkinson_vol_{w}", "volatility", f"sqrt(mean(ln(high/low)^2) / (4 ln 2)) over {w} rows", w - 1)
    for w in (10, 20, 60):
        add(f"garman_klass_vol_{w}", "volatility", f"sqrt(max(0, mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2))) over {w} rows", w - 1)
    add("rogers_satchell_vol_20", "volatility", "sqrt(max(0, mean(ln(H/C) ln(H/O) + ln(L/C) ln(L/O)))) over 20 rows", 19)
    for w in (5, 10, 14):
        add(
            f"atr_{w}_rel",
            "volatility",
            f"Wilder average true range ({w}) / close",
            w - 1 + burn_in(1 / w),
            f"AverageTrueRange(high, low, close, {w}).average_true_range() / close",
        )
    add(
        "bb_pct_b_20",
        "volatility",
        "Bollinger %B (20 rows, 2 population std); 0.5 when std is 0",
        19,
        "BollingerBands(close, 20, 2).bollinger_pband()",
        "ta gives NaN on a flat window, we give 0.5",
    )
    add("bb_width_20", "volatility", "Bollinger width (upper - lower) / middle (20, 2)", 19, "BollingerBands(close, 20, 2).bollinger_wband() / 100")
    kelt = max(burn_in(2 / 21), 9 + burn_in(1 / 10))
    add(
        "keltner_pct_20",
        "volatility",
        "position of close in the Keltner channel EMA20 +/- 2 ATR10; 0.5 if ATR is 0",
        kelt,
        "KeltnerChannel(high, low, close, 20, 10, original_version=False).keltner_channel_pband()",
    )
    add(
        "keltner_width_20",
        "volatility",
        "Keltner channel width 4 ATR10 / EMA20",
        kelt,
        "KeltnerChannel(high, low, close, 20, 10, original_version=False).keltner_channel_wband() / 100",
    )
    # momentum ----------------------------------------------------------------------------------
    for w in (6, 14, 21):
        add(
            f"rsi_{w}",
            "momentum",
            f"Wilder RSI({w}) in 0..100; 50 when the window has no move",
            burn_in(1 / w),
            f"RSIIndicator(close, {w}).rsi()",
            "ta gives 100 when there is no down move at all, even with no up move",
        )
    add(
        "stoch_k_14",
        "momentum",
        "100 (close - low14) / (high14 - low14); 50 if no range",
        13,
        "StochasticOscillator(high, low, close, 14, 3).stoch()",
        "ta gives NaN with no range, we give 50",
    )
    add(
        "stoch_d_3",
        "momentum",
        "3-row mean of stoch_k_14",
        15,
        "StochasticOscillator(high, low, close, 14, 3).stoch_signal()",
        "ta gives NaN if one of the 3 rows has no range; we average stoch_k_14 (50 there)",
    )
    add(
        "williams_r_14",
        "momentum",
        "-100 (high14 - close) / (high14 - low14); -50 if no range",
        13,
        "WilliamsRIndicator(high, low, close, 14).williams_r()",
    )
    add(
        "stoch_rsi_14",
        "momentum",
        "(rsi_14 - min14(rsi_14)) / (max14 - min14); 0.5 if flat",
        burn_in(1 / 14) + 13,
        "StochRSIIndicator(close, 14).stochrsi()",
        "prices flat for 14 rows leave the RSI constant up to rounding: ta divides that noise (0, 1 or NaN), "
        "we treat an RSI range below 1e-9 as flat (0.5)",
    )
    add(
        "cci_20",
        "momentum",
        "(TP - SMA20(TP)) / (0.015 mean abs deviation), TP = (H+L+C)/3; 0 if flat",
        19,
        "CCIIndicator(high, low, close, 20).cci()",
    )
    add(
        "mfi_14",
        "momentum",
        "money flow index: 100 up-flow / (up + down flow) of TP x volume over 14 rows; 50 if none",
        14,
        "MFIIndicator(high, low, close, volume, 14).money_flow_index()",
    )
    add(
        "ultimate_osc",
        "momentum",
        "ultimate oscillator (7, 14, 28; weights 4, 2, 1) in 0..100",
        28,
        "UltimateOscillator(high, low, close).ultimate_oscillator()",
        "a window with no true range counts 0.5 (ta: NaN)",
    )
    add("awesome_osc_rel", "momentum", "(SMA5 - SMA34 of (H+L)/2) / close", 33, "AwesomeOscillatorIndicator(high, low).awesome_oscillator() / close")
    add(
        "tsi",
        "momentum",
        "true strength index (25, 13): 100 EMA(EMA(change)) / EMA(EMA(|change|))",
        25 + burn_in(2 / 26, 2),
        "TSIIndicator(close).tsi()",
        "0 when the smoothed |change| is 0 (ta: NaN)",
    )
    # trend --------------------------------------------------------------------------------------
    add("macd_rel", "trend", "MACD line (EMA12 - EMA26 of close) / close", burn_in(2 / 27), "MACD(close).macd() / close")
    add("macd_signal_rel", "trend", "EMA9 of the MACD line / close", burn_in(2 / 27, 2), "MACD(close).macd_signal() / close")
    add("macd_hist_rel", "trend", "(MACD line - signal) / close", burn_in(2 / 27, 2), "MACD(close).macd_diff() / close")
    for w in (10, 20, 40):
        add(f"close_to_ema_{w}", "trend", f"close / EMA{w}(close) - 1", burn_in(2 / (w + 1)), f"close / EMAIndicator(close, {w}).ema_indicator() - 1")
    add(
        "adx_14",
        "trend",
        "average directional index (14), Wilder",
        14 + burn_in(1 / 14, 2),
        "ADXIndicator(high, low, close, 14).adx()",
        "ta (0.11) writes 0, not NaN, before its first value (row 27); the last row is computed too",
    )
    add("adx_pos_14", "trend", "+DI (14): 100 Wilder(+DM) / Wilder(TR)", 14 + burn_in(1 / 14), "ADXIndicator(high, low, close, 14).adx_pos()")
    add("adx_neg_14", "trend", "-DI (14): 100 Wilder(-DM) / Wilder(TR)", 14 + burn_in(1 / 14), "ADXIndicator(high, low, close, 14).adx_neg()")
    add(
        "psar_dist",
        "trend",
        "(close - parabolic SAR(0.02, 0.2)) / close",
        250,
        "(close - PSARIndicator(high, low, close).psar()) / close",
        "path dependent: warm-up 250 rows so the state no longer depends on the start",
    )
    add(
        "psar_up",
        "trend",
        "1 if the parabolic SAR is in an up-trend, else 0",
        250,
        "PSARIndicator(high, low, close).psar_up().notna()",
        "ta's psar_up_indicator() marks only the switch days; the state is where psar_up() is set",
    )
    ichimoku = "IchimokuIndicator(high, low, 9, 26, 52, visual=False)"
    add("ichimoku_conv_dist", "trend", "close / Ichimoku conversion line (9) - 1", 8, f"close / {ichimoku}.ichimoku_conversion_line() - 1")
    add("ichimoku_base_dist", "trend", "close / Ichimoku base line (26) - 1", 25, f"close / {ichimoku}.ichimoku_base_line() - 1")
    add("ichimoku_a_dist", "trend", "close / Ichimoku span A (unshifted: no look-ahead) - 1", 25, f"close / {ichimoku}.ichimoku_a() - 1")
    add(
        "ichimoku_b_dist",
        "trend",
        "close / Ichimoku span B (52, unshifted) - 1",
        51,
        f"close / {ichimoku}.ichimoku_b() - 1",
        "ta fills span B from partial windows before row 51; we wait for the full window",
    )
    add("ichimoku_cloud_rel", "trend", "(span A - span B) / close", 51)
    add(
        "aroon_up_25",
        "trend",
        "100 (25 - rows since the 26-row high) / 25 (oldest occurrence on ties)",
        25,
        "AroonIndicator(high, low, 25).aroon_up()",
    )
    add(
        "aroon_down_25",
        "trend",
        "100 (25 - rows since the 26-row low) / 25 (oldest occurrence on ties)",
        25,
        "AroonIndicator(high, low, 25).aroon_down()",
    )
    add(
        "vortex_pos_14",
        "trend",
        "sum|high - previous low| / sum TR over 14 rows; 1 if no range",
        14,
        "VortexIndicator(high, low, close, 14).vortex_indicator_pos()",
    )
    add(
        "vortex_neg_14",
        "trend",
        "sum|low - previous high| / sum TR over 14 rows; 1 if no range",
        14,
        "VortexIndicator(high, low, close, 14).vortex_indicator_neg()",
    )
    add("trix_15", "trend", "100 x one-row change of the triple EMA15 of close", 29 + burn_in(2 / 16, 3), "TRIXIndicator(close, 15).trix()")
    add(
        "mass_index",
        "trend",
        "sum over 25 rows of EMA9(H-L) / EMA9(EMA9(H-L))",
        40 + burn_in(0.2, 2),
        "MassIndex(high, low, 9, 25).mass_index()",
        "a row whose smoothed range is 0 counts 1 (ta: NaN)",
    )
    add("dpo_20_rel", "trend", "(close 11 rows back - SMA20) / close (detrended price oscillator)", 19, "DPOIndicator(close, 20).dpo() / close")
    add(
        "ulcer_index_14",
        "trend",
        "sqrt(mean over 14 rows of (100 x drawdown from the 14-row max close)^2)",
        26,
        "UlcerIndex(close, 14).ulcer_index()",
        "ta uses partial-window maxima in the first rows; we wait for full windows",
    )
    # volume -------------------------------------------------------------------------------------
    for w in (20, 60):
        add(
            f"obv_change_{w}",
            "volume",
            f"OBV change over {w} rows / volume over {w} rows; 0 with no volume",
            w,
            f"OnBalanceVolumeIndicator(close, volume).on_balance_volume().diff({w}) / volume.rolling({w}).sum()",
            "as ta: an unchanged close counts as an up day",
        )
    add(
        "cmf_20",
        "volume",
        "Chaikin money flow (20); 0 with no volume",
        19,
        "ChaikinMoneyFlowIndicator(high, low, close, volume, 20).chaikin_money_flow()",
    )
    add(
        "force_index_13_rel",
        "volume",
        "EMA13(close change x volume) / (close x SMA20(volume)); 0 with no volume",
        max(19, 1 + burn_in(2 / 14)),
        "ForceIndexIndicator(close, volume, 13).force_index() / (close * volume.rolling(20).mean())",
    )
    for w in (14, 60):
        add(
            f"vwap_dist_{w}",
            "volume",
            f"close / rolling {w}-row VWAP of the typical price - 1; 0 with no volume",
            w - 1,
            f"close / VolumeWeightedAveragePrice(high, low, close, volume, {w}).volume_weighted_average_price() - 1",
        )
    add("volume_z_20", "volume", "(volume - SMA20) / std20 (ddof 1); 0 when std is 0", 19)
    add("dollar_volume_log_20", "volume", "log1p(SMA20(close x volume))", 19)
    add("volume_ma_ratio_5_20", "volume", "log1p(SMA5(volume)) - log1p(SMA20(volume))", 19)
    windowed(
        "volume",
        [
            ("vma_ratio", "log1p(SMA{w}(volume)) - log1p(volume) (Alpha158 VMA, log form)", -1),
            ("vstd", "std / mean of volume over {w} rows; 0 with no volume", -1),
            ("wvma", "std / mean of |return| x volume over {w} rows (Alpha158 WVMA); 0 with no volume", 0),
            ("vsump", "sum of volume increases / sum of |volume changes| over {w} rows; 0.5 if none", 0),
        ],
    )
    # rolling (Alpha158 in spirit) ---------------------------------------------------------------
    for w in (5, 10, 20, 30, 60, 120, 250):
        add(f"close_to_sma_{w}", "rolling", f"close / SMA{w}(close) - 1", w - 1, f"close / SMAIndicator(close, {w}).sma_indicator() - 1")
    windowed(
        "rolling",
        [
            ("std", "population std of close over {w} rows / close", -1),
            ("slope", "OLS slope of close on time over {w} rows / close", -1),
            ("rsqr", "R^2 of that regression; 0 on a flat window", -1),
            ("resid", "(close - fitted value today) / close, same regression", -1),
            ("max", "max(high over {w} rows) / close - 1", -1),
            ("min", "min(low over {w} rows) / close - 1", -1),
            ("range_pos", "(close - min low) / (max high - min low) over {w} rows; 0.5 if flat (quantile position)", -1),
            ("rank", "share of the last {w} closes <= today's close (rank of today in the window)", -1),
            ("imax", "rows since the highest high of the last {w} rows / {w} (oldest on ties)", -1),
            ("imin", "rows since the lowest low of the last {w} rows / {w} (oldest on ties)", -1),
            ("corr_pv", "corr(close, log1p(volume)) over {w} rows; 0 if either is flat", -1),
            ("cord", "corr(return, change of log1p(volume)) over {w} rows; 0 if either is flat", 0),
            ("up_share", "share of the last {w} daily returns that are > 0", 0),
            ("sump", "sum of gains / sum of |close changes| over {w} rows; 0.5 if none", 0),
        ],
    )
    # beta (stock vs S&P 500 over the same intervals) ---------------------------------------------
    for w in (20, 60):
        add(f"beta_spx_{w}", "beta", f"cov(stock, S&P 500 daily returns) / var(S&P 500) over {w} rows; 0 if flat", w)
    for w in (20, 60):
        add(f"corr_spx_{w}", "beta", f"corr(stock, S&P 500 daily returns) over {w} rows; 0 if flat", w)
    add("idio_vol_60", "beta", "std of the residual of the 60-row market regression (population)", 60)
    add("excess_ret_20", "beta", "ret_20 - S&P 500 return over the same 20 rows", 20)
    # market (on market rows, joined by date) -----------------------------------------------------
    add("vix_level", "market", "VIX close", 0)
    for k in (1, 5, 20):
        add(f"vix_change_{k}", "market", f"VIX close - VIX close {k} market rows back (points)", k)
    add("vix_rank_250", "market", "share of the last 250 VIX closes <= today's (percentile)", 249)
    add("vix_zscore_60", "market", "(VIX - mean60) / std60 (population); 0 if flat", 59)
    for k in (1, 5, 20, 60):
        add(f"spx_ret_{k}", "market", f"S&P 500 return over {k} market rows", k)
    add("spx_drawdown", "market", "S&P 500 close / its running maximum up to t - 1", 0)
    add("spx_drawdown_250", "market", "S&P 500 close / its max over 250 rows - 1", 249)
    for w in (20, 60):
        add(f"spx_volatility_{w}", "market", f"std (ddof 1) of S&P 500 daily returns over {w} rows", w)
    add("spx_trend_200", "market", "S&P 500 close / SMA200 - 1", 199)
    add("spx_sma_50_200", "market", "S&P 500 SMA50 / SMA200 - 1", 199)
    for k in (5, 20, 60):
        add(f"dgs10_change_{k}", "market", f"10-year yield - its value {k} market rows back (points)", k)
    add(
        "dgs10_zscore_250",
        "market",
        "(10-year yield - mean250) / std250; 0 if flat",
        249,
        note="the raw yield level is not a feature: it is non-stationary and lets models learn the era",
    )
    # cross-section (same-date values of the universe) --------------------------------------------
    for k in (1, 5, 20, 60):
        add(f"cs_rank_ret_{k}", "cross_section", f"percentile rank of ret_{k} among the tickers that day", k)
    for w in (20, 60):
        add(f"cs_rank_volatility_{w}", "cross_section", f"percentile rank of volatility_{w} that day", w)
    add("cs_rank_dollar_volume_20", "cross_section", "percentile rank of dollar_volume_log_20 that day", 19)
    add("cs_zscore_ret_20", "cross_section", "(ret_20 - mean) / std across the tickers that day; 0 if flat", 20)
    for k in (5, 20, 60):
        add(f"sector_rel_ret_{k}", "cross_section", f"ret_{k} - mean ret_{k} of its GICS sector that day", k)
    add("sector_rel_volatility_20", "cross_section", "volatility_20 / its sector's mean that day - 1", 20)
    add("sector_rank_ret_20", "cross_section", "percentile rank of ret_20 within its GICS sector that day", 20)
    return tuple(specs)


FEATURE_REGISTRY: tuple[FeatureSpec, ...] = _build()
FEATURE_NAMES: list[str] = [s.name for s in FEATURE_REGISTRY]
MAX_LOOKBACK: int = max(s.lookback for s in FEATURE_REGISTRY)
PER_TICKER: list[FeatureSpec] = [s for s in FEATURE_REGISTRY if s.per_ticker]
# The per-ticker families in registry order, each written by its own kernel (``kernels._<family>``).
PER_TICKER_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f not in ("market", "cross_section"))


def family_block(family: str) -> range:
    """Positions (in ``FEATURE_NAMES``) of ``family``'s features: one contiguous block."""
    at = [i for i, s in enumerate(FEATURE_REGISTRY) if s.family == family]
    if not at:
        raise KeyError(f"unknown feature family {family!r}")
    return range(at[0], at[-1] + 1)


assert all(len(family_block(f)) == sum(s.family == f for s in FEATURE_REGISTRY) for f in FAMILIES), "families must be contiguous"
assert [s.family for s in PER_TICKER] == [f for f in PER_TICKER_FAMILIES for _ in family_block(f)], "per-ticker blocks in family order"
MARKET_FEATURES: frozenset[str] = frozenset(s.name for s in FEATURE_REGISTRY if s.family in ("market", "beta"))
SECTOR_FEATURES: frozenset[str] = frozenset(s.name for s in FEATURE_REGISTRY if s.name.startswith("sector_"))
_BY_NAME = {s.name: s for s in FEATURE_REGISTRY}

# Cross-sectional features: (name, source feature, kind) with kind rank | zscore | sector_diff |
# sector_ratio | sector_rank.
CROSS_SECTION: tuple[tuple[str, str, str], ...] = (
    ("cs_rank_ret_1", "ret_1", "rank"),
    ("cs_rank_ret_5", "ret_5", "rank"),
    ("cs_rank_ret_20", "ret_20", "rank"),
    ("cs_rank_ret_60", "ret_60", "rank"),
    ("cs_rank_volatility_20", "volatility_20", "rank"),
    ("cs_rank_volatility_60", "volatility_60", "rank"),
    ("cs_rank_dollar_volume_20", "dollar_volume_log_20", "rank"),
    ("cs_zscore_ret_20", "ret_20", "zscore"),
    ("sector_rel_ret_5", "ret_5", "sector_diff"),
    ("sector_rel_ret_20", "ret_20", "sector_diff"),
    ("sector_rel_ret_60", "ret_60", "sector_diff"),
    ("sector_rel_volatility_20", "volatility_20", "sector_ratio"),
    ("sector_rank_ret_20", "ret_20", "sector_rank"),
)


def feature_spec(name: str) -> FeatureSpec:
    """Return the registry entry of feature ``name`` (KeyError if unknown)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}") from None


def registry_frame():
    """The registry as a DataFrame (for metadata and the README table)."""
    import pandas as pd

    return pd.DataFrame(
        [
            {"feature": s.name, "family": s.family, "lookback": s.lookback, "definition": s.definition, "ta": s.ta, "note": s.note}
            for s in FEATURE_REGISTRY
        ]
    )


def markdown_table() -> str:
    """The generated README table: one line per feature."""
    lines = ["| feature | family | warm-up rows | definition | `ta` equivalent / note |", "|---|---|---|---|---|"]
    for s in FEATURE_REGISTRY:
        ref = f"`{s.ta}`" if s.ta else ""
        if s.note:
            ref = f"{ref} ({s.note})" if ref else s.note
        definition = s.definition.replace("|", "\\|")
        ref = ref.replace("|", "\\|")
        lines.append(f"| `{s.name}` | {s.family} | {s.lookback} | {definition} | {ref} |")
    return "\n".join(lines)
