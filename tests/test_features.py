"""Tests of stockml_core.features on slices of the real sample: contract, no look-ahead, warm-up."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml_core.features import (
    FAMILIES,
    FEATURE_NAMES,
    FEATURE_REGISTRY,
    MARKET_FEATURES,
    MAX_LOOKBACK,
    MIN_BLOCK_DAYS,
    SECTOR_FEATURES,
    block_days,
    compute_features,
    compute_features_since,
    feature_blocks,
    feature_spec,
    markdown_table,
    update_features,
    warmup_violations,
)
from stockml_core.features.registry import CROSS_SECTION

DATA = Path(__file__).resolve().parent.parent / "data" / "sample"
MARKET_COLS = ["spx_close", "vix_close", "dgs10"]
# Per-ticker features: warm-up counted on the ticker's own rows (market family counts market rows).
TICKER_AXIS = [s.name for s in FEATURE_REGISTRY if s.family != "market"]
MARKET_AXIS = [s.name for s in FEATURE_REGISTRY if s.family == "market"]


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return pd.read_csv(DATA / "prices.csv.gz", parse_dates=["date"])


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    m = pd.read_csv(DATA / "market.csv.gz", parse_dates=["date"])
    m[MARKET_COLS] = m[MARKET_COLS].ffill()  # the raw file has a few gaps; the pipeline repairs them
    return m


@pytest.fixture(scope="module")
def sectors() -> pd.DataFrame:
    return pd.read_csv(DATA / "sectors.csv")[["ticker", "gics_sector"]]


def _slice(prices: pd.DataFrame, tickers: list[str], start: str, end: str) -> pd.DataFrame:
    keep = prices["ticker"].isin(tickers) & (prices["date"] >= start) & (prices["date"] <= end)
    return prices[keep].reset_index(drop=True)


@pytest.fixture(scope="module")
def lookahead_slice(prices: pd.DataFrame) -> pd.DataFrame:
    # Two sectors of two tickers each, three years including the 2010-04-26 zero-volume day.
    return _slice(prices, ["KO", "PG", "SPG", "PSA"], "2009-01-01", "2011-12-31")


@pytest.fixture(scope="module")
def warmup_slice(prices: pd.DataFrame) -> pd.DataFrame:
    # PSA's history starts on 2005-02-25, inside the slice: a late listing.
    return _slice(prices, ["JPM", "AXP", "PSA", "XOM"], "2004-01-01", "2006-12-31")


def _finite_after_warmup(out: pd.DataFrame, names: list[str]) -> None:
    pos = out.groupby("ticker").cumcount().to_numpy()
    for name in names:
        values = out[name].to_numpy()
        after = pos >= feature_spec(name).lookback
        assert np.isfinite(values[after]).all(), name
        assert np.isnan(values[~after]).all(), name


# ---------------------------------------------------------------------------------------- contract


def test_registry_contract() -> None:
    assert len(FEATURE_NAMES) >= 150
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert FEATURE_NAMES == [s.name for s in FEATURE_REGISTRY]
    for spec in FEATURE_REGISTRY:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", spec.name), spec.name
        assert spec.family in FAMILIES and spec.definition
        assert isinstance(spec.lookback, int) and spec.lookback >= 0
        assert feature_spec(spec.name) is spec
    assert MAX_LOOKBACK == max(s.lookback for s in FEATURE_REGISTRY)
    assert 250 <= MAX_LOOKBACK <= 400
    assert {s.family for s in FEATURE_REGISTRY} == set(FAMILIES)
    assert SECTOR_FEATURES <= set(FEATURE_NAMES) and MARKET_FEATURES <= set(FEATURE_NAMES)
    with pytest.raises(KeyError):
        feature_spec("no_such_feature")


def test_output_layout(lookahead_slice, market, sectors) -> None:
    shuffled = lookahead_slice.sample(frac=1.0, random_state=3)
    out = compute_features(shuffled, market, sectors)
    assert list(out.columns) == ["ticker", "date", *FEATURE_NAMES]
    assert (out[FEATURE_NAMES].dtypes == np.float32).all()
    assert len(out) == len(lookahead_slice)
    assert isinstance(out.index, pd.RangeIndex) and out.index.start == 0
    expected_keys = lookahead_slice.sort_values(["ticker", "date"])[["ticker", "date"]]
    pd.testing.assert_frame_equal(out[["ticker", "date"]], expected_keys.reset_index(drop=True))
    # Input order must not matter.
    again = compute_features(lookahead_slice, market, sectors)
    pd.testing.assert_frame_equal(out, again)
    assert not np.isinf(out[FEATURE_NAMES].to_numpy()).any()


def test_invalid_inputs_rejected(lookahead_slice, market) -> None:
    with pytest.raises(ValueError, match="one row per"):
        compute_features(pd.concat([lookahead_slice, lookahead_slice.head(1)]))
    with pytest.raises(ValueError, match="null"):
        compute_features(lookahead_slice.assign(ticker=lookahead_slice["ticker"].where(lookahead_slice.index != 5)))
    with pytest.raises(ValueError, match="lacks columns"):
        compute_features(lookahead_slice, market.drop(columns=["dgs10"]))


# ------------------------------------------------------------------------------------ no look-ahead


def _cut_dates(frame: pd.DataFrame, seed: int) -> list[pd.Timestamp]:
    # Cuts late enough that even the longest warm-up has values before them.
    dates = np.sort(frame["date"].unique())
    rng = np.random.default_rng(seed)
    return [pd.Timestamp(d) for d in rng.choice(dates[MAX_LOOKBACK + 10 : -20], size=3, replace=False)]


def _assert_past_identical(full: pd.DataFrame, other: pd.DataFrame, cut: pd.Timestamp) -> set[str]:
    """Assert every feature is bit-identical at dates <= cut; return features with values there."""
    a = full[full["date"] <= cut].reset_index(drop=True)
    b = other[other["date"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(a[["ticker", "date"]], b[["ticker", "date"]])
    changed = [n for n in FEATURE_NAMES if not np.array_equal(a[n], b[n], equal_nan=True)]
    assert not changed, f"look-ahead at cut {cut.date()}: {changed}"
    return {n for n in FEATURE_NAMES if np.isfinite(a[n].to_numpy()).any()}


def test_no_lookahead_future_perturbed(lookahead_slice, market, sectors) -> None:
    mkt = market[market["date"] >= "2007-01-01"].reset_index(drop=True)
    full = compute_features(lookahead_slice, mkt, sectors)
    rng = np.random.default_rng(11)
    covered: set[str] = set()
    for cut in _cut_dates(lookahead_slice, seed=5):
        future = lookahead_slice["date"] > cut
        prices = lookahead_slice.copy()
        for col in ["open", "high", "low", "close"]:
            prices.loc[future, col] *= rng.uniform(0.5, 1.5, future.sum())
        prices.loc[future, "volume"] = np.round(prices.loc[future, "volume"] * rng.uniform(0.0, 3.0, future.sum()))
        # A newcomer listed after the cut in PSA's and SPG's sector, and PG delisted at the cut:
        # the future universe changes, so ranks and sector means must not look at it.
        newcomer = prices[future & (prices["ticker"] == "SPG")].assign(ticker="NEWCO")
        newcomer["close"] *= 3.0
        prices = pd.concat([prices[~(future & (prices["ticker"] == "PG"))], newcomer])
        secs = pd.concat([sectors, pd.DataFrame({"ticker": ["NEWCO"], "gics_sector": ["Real Estate"]})])
        mk = mkt.copy()
        mfuture = mk["date"] > cut
        for col in MARKET_COLS:
            mk.loc[mfuture, col] *= rng.uniform(0.5, 1.5, mfuture.sum())
        other = compute_features(prices, mk, secs)
        other = other[other["ticker"] != "NEWCO"]
        covered |= _assert_past_identical(full, other, cut)
    assert covered == set(FEATURE_NAMES)  # the proof is not vacuous for any feature


def test_no_lookahead_truncated(lookahead_slice, market, sectors) -> None:
    full = compute_features(lookahead_slice, market, sectors)
    for cut in _cut_dates(lookahead_slice, seed=9):
        truncated = compute_features(lookahead_slice[lookahead_slice["date"] <= cut], market[market["date"] <= cut], sectors)
        _assert_past_identical(full, truncated, cut)


# ----------------------------------------------------------------------------------------- warm-up


def test_warmup_on_real_slice(warmup_slice, market, sectors) -> None:
    # Market history starts with the slice, so the market warm-up is visible on stock rows too.
    mkt = market[market["date"] >= warmup_slice["date"].min()].reset_index(drop=True)
    out = compute_features(warmup_slice, mkt, sectors)
    _finite_after_warmup(out, TICKER_AXIS)
    # Market family: NaN exactly while the market series has fewer rows than the lookback.
    market_row = np.searchsorted(mkt["date"].to_numpy(), out["date"].to_numpy(), side="right") - 1
    for name in MARKET_AXIS:
        values = out[name].to_numpy()
        warm = market_row < feature_spec(name).lookback
        assert np.isnan(values[warm]).all(), name
        assert np.isfinite(values[~warm]).all(), name
    # PSA joins in 2005 with a full market history: its market features are there from day one.
    psa = out[out["ticker"] == "PSA"]
    assert np.isfinite(psa["vix_rank_250"].to_numpy()[0])
    assert np.isnan(psa["ret_1"].to_numpy()[0])
    assert warmup_violations(compute_features(warmup_slice, market, sectors)).empty


def test_market_shorter_than_lookback_gives_nan(warmup_slice, market) -> None:
    mkt = market[market["date"] >= "2006-06-01"]
    out = compute_features(warmup_slice, mkt)
    early = out["date"] < "2006-06-01"
    assert out.loc[early, MARKET_AXIS].isna().all().all()
    assert out.loc[~early, "vix_rank_250"].isna().all()  # fewer than 250 market rows by 2006-12
    assert out.loc[~early, "vix_level"].notna().all()


def test_warmup_violations_reports(warmup_slice, market, sectors) -> None:
    out = compute_features(warmup_slice, market, sectors)
    empty = warmup_violations(out)
    assert empty.empty and list(empty.columns) == ["ticker", "date", "feature"]
    broken = out.copy()
    broken.loc[500, "rsi_14"] = np.inf
    broken.loc[600, "vix_level"] = np.nan
    found = warmup_violations(broken)
    assert len(found) == 2
    assert set(found["feature"]) == {"rsi_14", "vix_level"}
    row = found[found["feature"] == "rsi_14"].iloc[0]
    assert (row["ticker"], row["date"]) == (out.loc[500, "ticker"], out.loc[500, "date"])
    # NaN inside the warm-up is expected, not a violation; after it, NaN is one.
    first = out.groupby("ticker").head(1).index
    assert out.loc[first, "ret_1"].isna().all()
    late_nan = out.copy()
    late_nan.loc[700, "ret_250"] = np.nan
    assert list(warmup_violations(late_nan)["feature"]) == ["ret_250"]


def test_optional_inputs(lookahead_slice, market, sectors) -> None:
    full = compute_features(lookahead_slice, market, sectors)
    bare = compute_features(lookahead_slice)
    assert bare[sorted(MARKET_FEATURES | SECTOR_FEATURES)].isna().all().all()
    for name in set(FEATURE_NAMES) - MARKET_FEATURES - SECTOR_FEATURES:
        assert np.array_equal(full[name], bare[name], equal_nan=True), name
    assert warmup_violations(bare).empty  # absent inputs are not violations
    # A ticker missing from the sectors table has no sector-relative value.
    partial = compute_features(lookahead_slice, market, sectors[sectors["ticker"] != "KO"])
    assert partial.loc[partial["ticker"] == "KO", "sector_rel_ret_20"].isna().all()


def test_tickers_do_not_leak_into_each_other(lookahead_slice) -> None:
    # Per-ticker features of a ticker computed inside the panel equal those computed alone,
    # bit for bit: no window or recursive filter carries state across a ticker boundary.
    panel = compute_features(lookahead_slice)
    own = [n for n in FEATURE_NAMES if n not in MARKET_FEATURES and not n.startswith(("cs_", "sector"))]
    for ticker in ("PG", "SPG"):
        alone = compute_features(lookahead_slice[lookahead_slice["ticker"] == ticker])
        inside = panel[panel["ticker"] == ticker].reset_index(drop=True)
        for name in own:
            assert np.array_equal(inside[name], alone[name], equal_nan=True), (ticker, name)


# ------------------------------------------------------------------------------------------ quirks


def _flat_ticker(dates: pd.Series, name: str, volume: float) -> pd.DataFrame:
    n = len(dates)
    return pd.DataFrame(
        {
            "ticker": name,
            "date": dates.to_numpy(),
            "open": 50.0,
            "high": 50.0,
            "low": 50.0,
            "close": 50.0,
            "volume": np.full(n, volume),
        }
    )


def test_zero_volume_and_flat_prices(lookahead_slice, market, sectors) -> None:
    prices = lookahead_slice.copy()
    ko = prices.index[prices["ticker"] == "KO"]
    prices.loc[ko[300:330], "volume"] = 0  # 30 straight zero-volume days: 20-day windows of zeros
    dates = prices.loc[prices["ticker"] == "KO", "date"]
    prices = pd.concat([prices, _flat_ticker(dates, "FLAT", 1e6), _flat_ticker(dates, "DEAD", 0.0)])
    secs = pd.concat([sectors, pd.DataFrame({"ticker": ["FLAT", "DEAD"], "gics_sector": ["Flat", "Flat"]})])
    out = compute_features(prices, market, secs)
    assert not np.isinf(out[FEATURE_NAMES].to_numpy()).any()
    assert warmup_violations(out).empty
    _finite_after_warmup(out, TICKER_AXIS)

    ko_out = out[out["ticker"] == "KO"].reset_index(drop=True)
    zero_windows = ko_out.iloc[320:330]  # 20-row volume windows made only of zeros
    assert (zero_windows["volume_z_20"] == 0).all()
    assert (zero_windows["obv_change_20"] == 0).all()
    assert (zero_windows["dollar_volume_log_20"] == 0).all()
    assert (zero_windows["volume_ma_ratio_5_20"] == 0).all()

    for name in ("FLAT", "DEAD"):
        flat = out[out["ticker"] == name].iloc[MAX_LOOKBACK:]
        expected = {
            "ret_1": 0.0,
            "candle_body": 0.0,
            "candle_upper_shadow": 0.0,
            "volatility_20": 0.0,
            "volatility_ratio_5_20": 1.0,
            "parkinson_vol_20": 0.0,
            "atr_14_rel": 0.0,
            "rsi_14": 50.0,
            "rsi_6": 50.0,
            "stoch_k_14": 50.0,
            "williams_r_14": -50.0,
            "cci_20": 0.0,
            "bb_pct_b_20": 0.5,
            "bb_width_20": 0.0,
            "macd_rel": 0.0,
            "corr_pv_20": 0.0,
            "corr_pv_5": 0.0,
            "cord_20": 0.0,
            "rsqr_20": 0.0,
            "slope_20": 0.0,
            "std_60": 0.0,
            "range_pos_20": 0.5,
            "rank_20": 1.0,
            "vstd_20": 0.0,
            "wvma_20": 0.0,
            "vsump_20": 0.5,
            "sump_20": 0.5,
            "mfi_14": 50.0,
            "ultimate_osc": 50.0,
            "keltner_pct_20": 0.5,
            "mass_index": 25.0,
            "tsi": 0.0,
            "trix_15": 0.0,
            "ret_kurt_60": 0.0,
            "ret_skew_60": 0.0,
            "idio_vol_60": 0.0,
            "stoch_rsi_14": 0.5,
            "cmf_20": 0.0,
            "vwap_dist_14": 0.0,
            "aroon_up_25": 0.0,
            "volume_z_20": 0.0,
            "obv_change_20": 1.0 if name == "FLAT" else 0.0,  # ta: an unchanged close adds the volume
            "beta_spx_60": 0.0,
            "corr_spx_60": 0.0,
            "close_to_sma_250": 0.0,
            "max_60": 0.0,
            "min_60": 0.0,
            "up_share_20": 0.0,
            "sector_rel_ret_20": 0.0,
        }
        for feature, value in expected.items():
            assert np.allclose(flat[feature], value, atol=1e-6), (name, feature)


def test_single_ticker_universe(lookahead_slice, market, sectors) -> None:
    one = lookahead_slice[lookahead_slice["ticker"] == "KO"]
    out = compute_features(one, market, sectors)
    assert warmup_violations(out).empty
    after = out.iloc[20:]
    assert (after["cs_rank_ret_20"] == 1.0).all() and (after["cs_rank_volatility_20"] == 1.0).all()
    assert (after["sector_rel_ret_20"] == 0.0).all()


def test_short_ticker_and_tiny_inputs(lookahead_slice, market, sectors) -> None:
    short = lookahead_slice[lookahead_slice["ticker"] == "PSA"].head(100)
    prices = pd.concat([lookahead_slice[lookahead_slice["ticker"] == "KO"], short])
    out = compute_features(prices, market, sectors)
    psa = out[out["ticker"] == "PSA"]
    for spec in FEATURE_REGISTRY:
        if spec.family != "market" and spec.lookback >= 100:
            assert psa[spec.name].isna().all(), spec.name
    assert warmup_violations(out).empty
    assert not np.isinf(out[FEATURE_NAMES].to_numpy()).any()
    # One row, and no row at all: no exception, right layout.
    single = compute_features(short.head(1), market, sectors)
    assert len(single) == 1 and np.isnan(single["ret_1"].iloc[0])
    empty = compute_features(short.head(0), market, sectors)
    assert empty.empty and list(empty.columns) == ["ticker", "date", *FEATURE_NAMES]


def test_missing_day(lookahead_slice, market, sectors) -> None:
    ko = lookahead_slice[lookahead_slice["ticker"] == "KO"].reset_index(drop=True)
    holed = ko.drop(index=400).reset_index(drop=True)
    out = compute_features(holed, market, sectors)
    assert warmup_violations(out).empty
    # Returns are row-based: across the hole ret_1 spans two days, and so does the S&P return.
    expected = np.float32(ko.loc[401, "close"] / ko.loc[399, "close"] - 1.0)
    assert out.loc[400, "ret_1"] == expected


# ------------------------------------------------------------------------------------- spot checks


def test_returns_and_rolling_match_pandas(lookahead_slice) -> None:
    out = compute_features(lookahead_slice)
    ordered = lookahead_slice.sort_values(["ticker", "date"]).reset_index(drop=True)
    close = ordered.groupby("ticker")["close"]
    for k in (1, 5, 20, 250):
        expected = close.pct_change(k, fill_method=None).astype(np.float32).to_numpy()
        assert np.array_equal(out[f"ret_{k}"].to_numpy(), expected, equal_nan=True), k
    vol20 = close.transform(lambda s: s.pct_change(fill_method=None).rolling(20).std())
    assert np.allclose(out["volatility_20"], vol20, rtol=1e-5, equal_nan=True)
    sma = close.transform(lambda s: s / s.rolling(60).mean() - 1)
    assert np.allclose(out["close_to_sma_60"], sma, rtol=1e-5, atol=1e-7, equal_nan=True)
    high = ordered.groupby("ticker")["high"].transform(lambda s: s.rolling(20).max())
    assert np.allclose(out["max_20"], high / ordered["close"] - 1, rtol=1e-5, atol=1e-7, equal_nan=True)
    rank = close.transform(lambda s: s.rolling(10).apply(lambda w: (w <= w[-1]).mean(), raw=True))
    assert np.allclose(out["rank_10"], rank, rtol=1e-6, equal_nan=True)
    slope = close.transform(lambda s: s.rolling(30).apply(lambda w: np.polyfit(np.arange(30), w, 1)[0] / w[-1], raw=True))
    assert np.allclose(out["slope_30"], slope, rtol=1e-4, atol=1e-7, equal_nan=True)
    corr = (
        ordered.assign(lv=np.log1p(ordered["volume"]))
        .groupby("ticker")[["close", "lv"]]
        .apply(lambda g: g["close"].rolling(20).corr(g["lv"]))
        .to_numpy()
    )
    assert np.allclose(out["corr_pv_20"], corr, atol=1e-5, equal_nan=True)


def _wilder_rsi(close: np.ndarray, n: int) -> np.ndarray:
    """Textbook Wilder RSI with a plain loop: SMA seed, then avg = (avg (n-1) + x) / n."""
    diff = np.diff(close)
    gain, loss = np.maximum(diff, 0), np.maximum(-diff, 0)
    out = np.full(len(close), np.nan)
    g, lo = gain[:n].mean(), loss[:n].mean()
    out[n] = 100 * g / (g + lo)
    for i in range(n + 1, len(close)):
        g = (g * (n - 1) + gain[i - 1]) / n
        lo = (lo * (n - 1) + loss[i - 1]) / n
        out[i] = 100 * g / (g + lo)
    return out


def test_rsi_matches_wilder_and_rising_series(lookahead_slice) -> None:
    ko = lookahead_slice[lookahead_slice["ticker"] == "KO"].reset_index(drop=True)
    out = compute_features(ko)
    # Different seeds (ta's zero seed vs the textbook SMA seed) agree once the warm-up has passed.
    after = np.arange(len(ko)) >= feature_spec("rsi_14").lookback
    assert np.allclose(out["rsi_14"][after], _wilder_rsi(ko["close"].to_numpy(), 14)[after], atol=1e-4)
    rising = ko.assign(close=np.linspace(10.0, 40.0, len(ko)))
    rising["high"] = rising["close"] + 0.5
    rising["low"] = rising["close"] - 0.5
    rising["open"] = rising["close"]
    r = compute_features(rising)
    for n in (6, 14, 21):
        assert (r[f"rsi_{n}"].iloc[feature_spec(f"rsi_{n}").lookback :] == 100.0).all()
    assert (r["up_share_20"].iloc[20:] == 1.0).all()


def test_indicator_spot_values(lookahead_slice) -> None:
    ko = lookahead_slice[lookahead_slice["ticker"] == "KO"].reset_index(drop=True)
    out = compute_features(ko)
    i = 400
    h, lo, c = (ko[col].to_numpy()[i - 19 : i + 1] for col in ("high", "low", "close"))
    tp = (h + lo + c) / 3
    cci = (tp[-1] - tp.mean()) / (0.015 * np.abs(tp - tp.mean()).mean())
    assert np.isclose(out.loc[i, "cci_20"], cci, rtol=1e-5)
    hh, ll = h[-14:].max(), lo[-14:].min()
    assert np.isclose(out.loc[i, "stoch_k_14"], 100 * (c[-1] - ll) / (hh - ll), rtol=1e-5)
    mean, sd = c.mean(), c.std()
    assert np.isclose(out.loc[i, "bb_pct_b_20"], (c[-1] - mean + 2 * sd) / (4 * sd), rtol=1e-5)


def test_market_spot_values(lookahead_slice, market, sectors) -> None:
    out = compute_features(lookahead_slice, market, sectors)
    m = market.set_index("date")
    spx = m["spx_close"]
    row = out[(out["ticker"] == "KO")].iloc[500]
    t = row["date"]
    assert np.isclose(row["spx_drawdown"], spx[t] / spx[:t].max() - 1, atol=1e-6)
    vix = m["vix_close"][:t].to_numpy()[-250:]
    rank = (vix <= vix[-1]).sum() / 250
    assert np.isclose(row["vix_rank_250"], rank, atol=1e-6)
    # Beta: OLS slope of the last 60 stock returns on the S&P returns over the same days.
    ko = lookahead_slice[lookahead_slice["ticker"] == "KO"].set_index("date")["close"][:t]
    rs = ko.pct_change().to_numpy()[-60:]
    rm = spx.reindex(ko.index).pct_change().to_numpy()[-60:]
    assert np.isclose(row["beta_spx_60"], np.polyfit(rm, rs, 1)[0], rtol=1e-4)
    assert np.isclose(row["corr_spx_60"], np.corrcoef(rm, rs)[0, 1], rtol=1e-4)
    # Cross-section on that date: rank among the four, minus the sector mean.
    day = out[out["date"] == t].set_index("ticker")
    ret20 = day["ret_20"].astype(np.float64)
    assert np.isclose(day.loc["KO", "cs_rank_ret_20"], ret20.rank(pct=True)["KO"])
    staples = ret20[["KO", "PG"]].mean()
    assert np.isclose(day.loc["KO", "sector_rel_ret_20"], ret20["KO"] - staples, atol=1e-6)


# ------------------------------------------------------------------------------------- incremental

# The incremental path matches the full recompute to 1e-6 (absolute and relative): window features
# are bit-identical almost everywhere; recursive filters differ by their forgotten seed (< 1e-7).
INC_TOL = {"rtol": 1e-6, "atol": 1e-6}


def _assert_features_close(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a[["ticker", "date"]].reset_index(drop=True), b[["ticker", "date"]].reset_index(drop=True))
    for name in FEATURE_NAMES:
        x, y = a[name].to_numpy(np.float64), b[name].to_numpy(np.float64)
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        np.testing.assert_allclose(x, y, err_msg=name, **INC_TOL)


@pytest.fixture(scope="module")
def long_panel(prices: pd.DataFrame) -> pd.DataFrame:
    # Six tickers of four sectors over 12 years, PSA listed inside the window (a short history).
    return _slice(prices, ["XOM", "JPM", "KO", "PG", "PSA", "IBM"], "2003-01-01", "2014-12-31")


def test_incremental_day_equals_full_recompute(long_panel, market, sectors) -> None:
    full = compute_features(long_panel, market, sectors)
    days = np.sort(long_panel["date"].unique())
    for day in (days[-1], days[1500], days[700], days[200]):
        one = compute_features_since(long_panel, day, market, sectors)
        _assert_features_close(one, full[full["date"] >= day])
    # One new day needs only the last MAX_LOOKBACK rows of each ticker: the older rows do not matter.
    last = days[-1]
    tail = long_panel.groupby("ticker", group_keys=False).apply(lambda g: g.iloc[-(MAX_LOOKBACK + 1) :])
    _assert_features_close(compute_features_since(tail, last, market, sectors), full[full["date"] == last])


def test_feature_blocks_equal_the_full_recompute(long_panel, market, sectors) -> None:
    # Blocks of MIN_BLOCK_DAYS days (the floor), each in groups of one ticker, from a first day inside PSA's warm-up, with a hole.
    holes = long_panel[(long_panel.ticker == "KO")].iloc[[900]][["ticker", "date"]]
    full = compute_features(long_panel, market, sectors, holes=holes)
    first = pd.Timestamp("2005-06-01")
    panel = long_panel.sort_values(["ticker", "date"]).reset_index(drop=True)
    blocks = list(feature_blocks(panel, first, market, sectors, holes=holes, max_rows=1))
    days = np.sort(panel.date[panel.date >= first].unique())
    assert [(a, b) for a, b, _, _ in blocks] == block_days(days, 6, 1)
    assert len(blocks) == int(np.ceil(len(days) / MIN_BLOCK_DAYS)) >= 3
    for a, b, part, rows in blocks:
        assert part.date.between(a, b).all()
        pd.testing.assert_frame_equal(part[["ticker", "date"]], panel.iloc[rows][["ticker", "date"]].reset_index(drop=True))
    got = pd.concat([p for _, _, p, _ in blocks]).sort_values(["ticker", "date"]).reset_index(drop=True)
    _assert_features_close(got, full[full.date >= first])
    # Groups of two tickers (at most 1,200 rows each, look-back included) in blocks of 200 days.
    grouped = list(feature_blocks(panel, first, market, sectors, holes=holes, max_rows=1_200))
    assert [(a, b) for a, b, _, _ in grouped] == block_days(days, 6, 1_200) and len(grouped) > len(blocks) / 2
    got = pd.concat([p for _, _, p, _ in grouped]).sort_values(["ticker", "date"]).reset_index(drop=True)
    _assert_features_close(got, full[full.date >= first])
    # A budget above the panel is one block; a first day after the data, none.
    assert len(list(feature_blocks(panel, first, market, sectors, max_rows=10**9))) == 1
    assert list(feature_blocks(panel, days[-1] + np.timedelta64(1, "D"), market, sectors)) == []


def test_update_features_appends_new_days(long_panel, market, sectors) -> None:
    full = compute_features(long_panel, market, sectors)
    cut = pd.Timestamp("2014-10-15")
    stored = compute_features(long_panel[long_panel["date"] <= cut], market, sectors)
    updated, added = update_features(stored, long_panel, market, sectors)
    assert added == int((long_panel["date"] > cut).sum()) > 0
    _assert_features_close(updated, full)
    assert update_features(updated, long_panel, market, sectors)[1] == 0  # nothing new: unchanged
    with pytest.raises(ValueError, match="does not match"):
        update_features(stored, long_panel[long_panel["ticker"] != "KO"], market, sectors)
    with pytest.raises(ValueError, match="columns"):
        update_features(stored.drop(columns=["rsi_14"]), long_panel, market, sectors)


def test_readme_feature_table_is_generated_from_the_registry() -> None:
    readme = (DATA.parent.parent / "README.md").read_text()
    start, end = "<!-- feature-table:start -->", "<!-- feature-table:end -->"
    assert start in readme and end in readme
    table = readme.split(start)[1].split(end)[0].strip()
    assert table == markdown_table().strip(), "README feature table is stale: run `make docs`"


# ----------------------------------------------------------------------------- cross-section, families


def test_cross_section_matches_pandas_on_every_date(long_panel, sectors) -> None:
    """Every rank / z-score / sector statistic on every date equals pandas' (ties averaged, NaN left out)."""
    out = compute_features(long_panel, sectors=sectors).merge(sectors, on="ticker")
    # ret_1 has exact ties (unchanged closes on the same day), and every source is NaN in its warm-up.
    assert out.groupby("date")["ret_1"].apply(lambda s: s.dropna().duplicated().any()).any()
    for name, src, kind in CROSS_SECTION:
        x = out[src].astype(np.float64)
        by_day = x.groupby(out["date"])
        by_sector = x.groupby([out["date"], out["gics_sector"]])
        if kind == "rank":
            expected = by_day.rank(pct=True)
        elif kind == "sector_rank":
            expected = by_sector.rank(pct=True)
        elif kind == "zscore":
            sd = by_day.transform(lambda s: s.std(ddof=0))
            expected = ((x - by_day.transform("mean")) / sd).where(sd > 1e-12, 0.0).where(x.notna())
        elif kind == "sector_diff":
            expected = x - by_sector.transform("mean")
        else:
            expected = x / by_sector.transform("mean") - 1
        np.testing.assert_allclose(out[name].to_numpy(np.float64), expected.to_numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_families_select_columns_and_equal_the_full_set(lookahead_slice, market, sectors) -> None:
    full = compute_features(lookahead_slice, market, sectors)
    for families in (["returns"], ["cross_section"], ["market", "beta"], ("trend", "rolling", "cross_section")):
        part = compute_features(lookahead_slice, market, sectors, families=families)
        names = [s.name for s in FEATURE_REGISTRY if s.family in families]
        assert list(part.columns) == ["ticker", "date", *names]
        pd.testing.assert_frame_equal(part, full[["ticker", "date", *names]])
    assert list(compute_features(lookahead_slice, families="candle").columns)[2:] == [s.name for s in FEATURE_REGISTRY if s.family == "candle"]
    with pytest.raises(ValueError, match="unknown feature families"):
        compute_features(lookahead_slice, families=["returns", "astrology"])


def _expand(label: str) -> list[str]:
    """``ret_{1,2}_x, y`` -> ``ret_1_x, ret_2_x, y`` (the kernels' write labels)."""
    names: list[str] = []
    for part in re.split(r",\s*(?![^{]*\})", label):
        m = re.fullmatch(r"([^{]*)\{([^}]*)\}(.*)", part.strip())
        names += [f"{m[1]}{x.strip()}{m[3]}" for x in m[2].split(",")] if m else [part.strip()]
    return names


def test_each_family_kernel_writes_its_registry_block_by_name() -> None:
    """Every per-ticker family has its own kernel, ``kernels._<family>`` (run by ``kernels.ticker_<family>``,
    ``TICKER_KERNELS[f]``), whose ``_put`` writes are labelled with the features they write; read in
    source order the labels are the registry's block."""
    import inspect

    from stockml_core.features import kernels
    from stockml_core.features.registry import PER_TICKER_FAMILIES, family_block

    assert PER_TICKER_FAMILIES == ("returns", "candle", "volatility", "momentum", "trend", "volume", "rolling", "beta")
    assert len(kernels.TICKER_KERNELS) == kernels.N_FAMILIES == len(PER_TICKER_FAMILIES)
    for f, family in enumerate(PER_TICKER_FAMILIES):
        assert kernels.TICKER_KERNELS[f] is getattr(kernels, f"ticker_{family}"), family
        dispatch = inspect.getsource(kernels.TICKER_KERNELS[f].py_func)
        assert f"written[t, {f}] = _{family}(" in dispatch, family
        source = inspect.getsource(getattr(kernels, f"_{family}").py_func)
        labels = re.findall(r"_put\(.*# +(?!\()(.+)$", source, flags=re.M)
        written = [name for label in labels for name in _expand(label)]
        assert written == FEATURE_NAMES[family_block(family).start : family_block(family).stop], family


def test_a_kernel_that_drifts_from_the_registry_is_refused(lookahead_slice, monkeypatch) -> None:
    """A family block whose kernel writes a different count stops the computation, naming the family."""
    from stockml_core.features import engine
    from stockml_core.features.registry import PER_TICKER_FAMILIES

    sizes = engine._BLOCK_SIZES.copy()
    sizes[PER_TICKER_FAMILIES.index("trend")] += 1
    monkeypatch.setattr(engine, "_BLOCK_SIZES", sizes)
    with pytest.raises(RuntimeError, match=r"kernels of \['trend'\] wrote"):
        compute_features(lookahead_slice, families=["trend"])


def test_each_kernel_compiles_one_signature(long_panel, market, sectors) -> None:
    """The engine hands every kernel one set of argument types, whichever path runs (full, a subset of
    families, without market or sectors, incremental, in blocks of one or several groups): a second
    signature would be a second compilation (about as long as the first) that ``make install``'s
    warm-up never covers. Run after the other tests of this module, it checks their calls too."""
    from numba.core.registry import CPUDispatcher

    from stockml_core.features import kernels

    holes = long_panel[(long_panel.ticker == "KO")].iloc[[900]][["ticker", "date"]]
    compute_features(long_panel, market, sectors, holes=holes)
    compute_features(long_panel, families=["candle", "cross_section"])
    cut = pd.Timestamp("2014-10-15")
    stored = compute_features(long_panel[long_panel["date"] <= cut], market, sectors)
    update_features(stored, long_panel, market, sectors)
    compute_features_since(long_panel, cut, market, sectors)
    for max_rows in (1_200, 10**9):  # several ticker groups (concatenated) and one (a column selection)
        for _ in feature_blocks(long_panel, cut, market, sectors, max_rows=max_rows):
            pass
    entry = [*kernels.TICKER_KERNELS, kernels.cross_section, kernels.scatter_rows, kernels.group_rows]
    assert {k.py_func.__name__: len(k.signatures) for k in entry} == {k.py_func.__name__: 1 for k in entry}
    dispatchers = [obj for obj in vars(kernels).values() if isinstance(obj, CPUDispatcher)]
    assert all(k in dispatchers for k in entry) and not any(k.targetoptions.get("parallel") for k in dispatchers)
