"""Tests of stockml_core.drift (feature, regime and overall drift) and stockml_core.backtest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml_core.backtest import next_day_returns, performance, run_backtest, summarize_backtest
from stockml_core.data import load_prices
from stockml_core.drift import (
    benjamini_hochberg,
    drift_score,
    feature_drift,
    mix_shift,
    psi,
    reference_and_current,
    regime_transition,
)
from stockml_core.regimes import REGIMES
from stockml_core.settings import DriftSettings

DATA = Path(__file__).resolve().parent.parent / "data"
S = DriftSettings()


# ------------------------------------------------------------------------------------ feature drift


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    """300 days x 8 tickers; ``shifted`` moves by 3 sd in the current window, ``stationary`` does not."""
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2016-01-04", periods=300)
    n_tickers = 8
    df = pd.DataFrame({"date": np.repeat(dates, n_tickers), "ticker": np.tile([f"T{i}" for i in range(n_tickers)], 300)})
    df["stationary"] = rng.normal(0, 1, len(df))
    current = (df.date >= dates[-S.current_window]).to_numpy()
    df["shifted"] = rng.normal(0, 1, len(df)) + 3.0 * current
    df["sparse"] = np.where(current, np.nan, 1.0)  # no current values: cannot be tested
    return df


def test_reference_and_current_windows(features) -> None:
    ref, cur = reference_and_current(features.date, S)
    days = np.sort(features.date.unique())
    assert features.date[cur].nunique() == S.current_window
    assert features.date[ref].nunique() == S.reference_window
    assert features.date[ref].max() < features.date[cur].min() == days[-S.current_window]
    assert not (ref & cur).any()


def test_feature_shifted_by_three_sd_is_flagged(features) -> None:
    out = feature_drift(features, ["stationary", "shifted"], S).set_index("feature")
    assert out.loc["shifted", "drifted"]
    assert out.loc["shifted", "mean_shift"] == pytest.approx(3.0, abs=0.3)
    assert out.loc["shifted", "psi"] > 1.0


def test_stationary_feature_is_not_flagged(features) -> None:
    out = feature_drift(features, ["stationary", "shifted"], S).set_index("feature")
    assert not out.loc["stationary", "drifted"]
    assert abs(out.loc["stationary", "mean_shift"]) < 0.3
    assert out.loc["stationary", "psi"] < 0.1


def test_feature_drift_is_sorted_by_ks_statistic(features) -> None:
    out = feature_drift(features, ["stationary", "shifted", "sparse"], S)
    assert list(out.feature) == ["shifted", "stationary", "sparse"]
    assert list(out.columns) == ["feature", "ks_statistic", "p_value", "psi", "mean_shift", "n_reference",
                                 "n_current", "p_value_bh", "drifted"]


def test_feature_without_enough_values_is_not_flagged(features) -> None:
    row = feature_drift(features, ["stationary", "sparse"], S).set_index("feature").loc["sparse"]
    assert row.n_current == 0 and np.isnan(row.ks_statistic) and np.isnan(row.p_value_bh)
    assert not row.drifted


def test_benjamini_hochberg_matches_hand_computation() -> None:
    # sorted: 0.005, 0.01, 0.03, 0.04 -> x 4/rank: 0.02, 0.02, 0.04, 0.04 -> running min from the top
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.005])), [0.02, 0.04, 0.04, 0.02])
    # step-up: 0.04 x 3/2 = 0.06 caps 0.03 x 3/1 = 0.09
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.04, 0.03, 0.2])), [0.06, 0.06, 0.2])


def test_benjamini_hochberg_is_capped_at_one_and_keeps_single_values() -> None:
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.9, 0.8])), [0.9, 0.9])
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.7, 0.6, 0.65])), [0.7, 0.7, 0.7])
    assert benjamini_hochberg(np.array([0.03]))[0] == pytest.approx(0.03)
    assert (benjamini_hochberg(np.random.default_rng(1).uniform(size=50)) <= 1.0).all()


def test_psi_of_identical_distributions_is_zero() -> None:
    x = np.random.default_rng(2).normal(size=1000)
    assert psi(x, x, 10) == pytest.approx(0.0)


def test_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=2000)
    small, large = psi(ref, rng.normal(0.2, 1, 500), 10), psi(ref, rng.normal(2.0, 1, 500), 10)
    assert 0 < small < 0.25 < large


def test_psi_of_a_constant_reference_is_zero() -> None:
    assert psi(np.ones(100), np.arange(10.0), 10) == 0.0


# ------------------------------------------------------------------------------------ regime mix


def test_mix_shift_names_normal_to_crash() -> None:
    reference = pd.Series(["normal"] * 90 + ["high_volatility"] * 10)
    current = pd.Series(["crash"] * 10 + ["high_volatility"] * 2 + ["normal"] * 8)
    tv, table = mix_shift(reference, current, list(REGIMES))
    assert list(table.category) == list(REGIMES)
    assert table.set_index("category").change["crash"] == pytest.approx(0.5)
    assert tv == pytest.approx(0.5)
    assert regime_transition(table) == "normal -> crash"


def test_identical_mix_has_no_shift_or_transition() -> None:
    mix = pd.Series(["normal", "normal", "recovery"])
    tv, table = mix_shift(mix, mix.sample(frac=1.0, random_state=0), list(REGIMES))
    assert tv == 0.0
    assert regime_transition(table) == "none"


def test_disjoint_mixes_have_total_variation_one() -> None:
    tv, _ = mix_shift(pd.Series(["normal"] * 5), pd.Series(["crash"] * 3), list(REGIMES))
    assert tv == pytest.approx(1.0)


# ------------------------------------------------------------------------------------ drift score


@pytest.mark.parametrize(("shares", "regime", "pred"), [(0, 0, 0), (1, 1, 1), (0.3, 0.6, None), (1, 1, None), (0.2, 0, 0.9)])
def test_drift_score_is_in_the_unit_interval(shares, regime, pred) -> None:
    assert 0.0 <= drift_score(shares, regime, pred, S) <= 1.0


def test_drift_score_is_the_weighted_mean() -> None:
    assert drift_score(0.4, 0.2, 0.8, S) == pytest.approx(0.5 * 0.4 + 0.25 * 0.2 + 0.25 * 0.8)


def test_drift_score_respreads_weights_without_prediction_drift() -> None:
    expected = (0.5 * 0.4 + 0.25 * 0.2) / 0.75
    assert drift_score(0.4, 0.2, None, S) == pytest.approx(expected)
    assert drift_score(0.4, 0.2, float("nan"), S) == pytest.approx(expected)
    assert drift_score(1.0, 1.0, None, S) == pytest.approx(1.0)  # full drift still reaches 1


# ------------------------------------------------------------------------------------ backtest


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    tickers = ("AAPL", "AMZN", "JPM", "KO", "MSFT", "PG", "T", "VZ", "XOM", "CVX")
    return load_prices(DATA, tickers=tickers, start="2014-01-01", end="2014-12-31")[0]


@pytest.fixture(scope="module")
def returns(prices) -> pd.DataFrame:
    return next_day_returns(prices)


@pytest.fixture(scope="module")
def oracle(returns) -> pd.DataFrame:
    """A score equal to the next-day return: perfect foresight, for testing the mechanics only."""
    return returns.dropna().rename(columns={"next_return": "score"})


def test_next_day_returns_are_close_to_next_close(prices, returns) -> None:
    ko = prices[prices.ticker == "KO"].reset_index(drop=True)
    r = returns[returns.ticker == "KO"].reset_index(drop=True)
    assert r.next_return[0] == pytest.approx(ko.close[1] / ko.close[0] - 1)
    assert np.isnan(r.next_return.iloc[-1])


def test_oracle_score_earns_positive_returns(oracle, returns) -> None:
    curve = run_backtest(oracle, returns, top_k=3, cost_bps=0.0)
    assert len(curve) == oracle.date.nunique()
    assert (curve.strategy_return > 0).all()
    assert curve.strategy_equity.iloc[-1] > curve.buy_and_hold_equity.iloc[-1]


def test_inverted_score_loses(oracle, returns) -> None:
    curve = run_backtest(oracle.assign(score=-oracle.score), returns, top_k=3, cost_bps=0.0)
    assert (curve.strategy_return < 0).all()


def test_costs_reduce_returns_in_proportion_to_turnover(oracle, returns) -> None:
    free = run_backtest(oracle, returns, top_k=3, cost_bps=0.0)
    costly = run_backtest(oracle, returns, top_k=3, cost_bps=10.0)
    np.testing.assert_allclose(free.strategy_return - costly.strategy_return, free.turnover * 10.0 / 1e4, atol=1e-15)
    np.testing.assert_allclose(costly.buy_and_hold_return, free.buy_and_hold_return)
    assert (costly.strategy_return <= free.strategy_return).all()


def test_first_day_turnover_opens_both_legs(oracle, returns) -> None:
    curve = run_backtest(oracle, returns, top_k=3, cost_bps=5.0)
    assert curve.turnover.iloc[0] == pytest.approx(2.0)  # +1 long, -1 short, from flat
    assert (curve.turnover <= 4.0 + 1e-12).all()


def test_constant_score_ranking_trades_once(returns) -> None:
    rank = {t: float(i) for i, t in enumerate(sorted(returns.ticker.unique()))}
    signals = returns.dropna()[["date", "ticker"]].assign(score=lambda d: d.ticker.map(rank))
    curve = run_backtest(signals, returns, top_k=2, cost_bps=5.0)
    assert curve.turnover.iloc[0] == pytest.approx(2.0)
    assert (curve.turnover.iloc[1:] == 0).all()


def test_buy_and_hold_is_the_equal_weight_mean(oracle, returns) -> None:
    curve = run_backtest(oracle, returns, top_k=3, cost_bps=5.0)
    expected = returns.dropna().groupby("date").next_return.mean()
    np.testing.assert_allclose(curve.buy_and_hold_return, expected.loc[curve.date].to_numpy())


def test_summary_has_strategy_and_buy_and_hold_rows(oracle, returns) -> None:
    summary = summarize_backtest(run_backtest(oracle, returns, top_k=3, cost_bps=5.0))
    assert list(summary.portfolio) == ["long_short_top_k", "buy_and_hold"]
    assert {"annual_return", "annual_volatility", "sharpe", "max_drawdown", "avg_daily_turnover"} <= set(summary.columns)
    assert summary.set_index("portfolio").avg_daily_turnover["buy_and_hold"] == 0.0
    assert (summary.max_drawdown <= 0).all()


def test_performance_max_drawdown_is_never_positive() -> None:
    rng = np.random.default_rng(9)
    for _ in range(5):
        assert performance(pd.Series(rng.normal(0.0005, 0.01, 300)))["max_drawdown"] <= 0
    assert performance(pd.Series([0.01] * 10))["max_drawdown"] == 0.0


def test_performance_of_a_known_series() -> None:
    r = pd.Series([0.1, -0.5, 0.2])
    perf = performance(r)
    assert perf["max_drawdown"] == pytest.approx(-0.5)
    assert perf["annual_volatility"] == pytest.approx(r.std() * np.sqrt(252))


def test_performance_of_no_returns_is_nan() -> None:
    assert all(np.isnan(v) for v in performance(pd.Series([], dtype=float)).values())
