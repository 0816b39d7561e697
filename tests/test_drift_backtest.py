"""Tests of stockml_core.decisions.drift (feature, regime and overall drift) and stockml_core.modeling.backtest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml_core.decisions.drift import (
    FEATURE_DRIFT_COLUMNS,
    EpisodeState,
    benjamini_hochberg,
    drift_score,
    feature_component,
    feature_drift,
    mix_shift,
    prediction_component,
    prediction_drift,
    psi,
    reference_and_current,
    regime_transition,
    simulate_policy,
    step_episode,
)
from stockml_core.market.data import load_prices
from stockml_core.market.regimes import REGIMES
from stockml_core.modeling.backtest import book_summary, decile_book, next_day_returns, performance, run_backtest, summarize_backtest
from stockml_core.settings import DriftSettings

DATA = Path(__file__).resolve().parent.parent / "data" / "sample"
S = DriftSettings()


# ------------------------------------------------------------------------------------ feature drift


def _panel(n_days: int = 300, n_tickers: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2016-01-04", periods=n_days)
    return pd.DataFrame({"date": np.repeat(dates, n_tickers), "ticker": np.tile([f"T{i}" for i in range(n_tickers)], n_days)}), rng, dates


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    """300 days x 8 tickers; ``shifted`` moves by 3 sd in the current window, ``stationary`` does not."""
    df, rng, dates = _panel()
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


def test_planted_shift_is_drifted_and_stationary_is_not(features) -> None:
    out = feature_drift(features, ["stationary", "shifted"], S).set_index("feature")
    assert out.loc["shifted", "drifted"] and out.loc["shifted", "effect"] > 1
    assert out.loc["shifted", "mean_shift"] == pytest.approx(3.0, abs=0.3)
    assert out.loc["shifted", "psi"] > 1.0
    assert not out.loc["stationary", "drifted"] and out.loc["stationary", "effect"] < 1
    assert abs(out.loc["stationary", "mean_shift"]) < 0.5


def test_wasserstein_is_normalized_by_the_reference_iqr(features) -> None:
    from scipy.stats import wasserstein_distance

    ref, cur = reference_and_current(features.date, S)
    r, c = features.shifted[ref].to_numpy(), features.shifted[cur].to_numpy()
    iqr = np.subtract(*np.quantile(r, [0.75, 0.25])) / 1.349
    row = feature_drift(features, ["shifted"], S).iloc[0]
    assert row.wasserstein == pytest.approx(wasserstein_distance(r, c) / iqr, rel=0.02)
    assert row.effect == pytest.approx(row.wasserstein / row.threshold)


def test_threshold_is_the_quantile_of_reference_windows(features) -> None:
    from scipy.stats import wasserstein_distance

    ref, _ = reference_and_current(features.date, S)
    r = features[ref]
    x = r.stationary.to_numpy()
    iqr = np.subtract(*np.quantile(x, [0.75, 0.25])) / 1.349
    days = np.sort(r.date.unique())
    starts = range(len(days) - S.current_window, -1, -S.calibration_step)
    dists = [wasserstein_distance(x, r.stationary[r.date.isin(days[i : i + S.current_window])]) / iqr for i in starts]
    row = feature_drift(features, ["stationary"], S).iloc[0]
    assert row.threshold == pytest.approx(np.quantile(dists, S.calibration_quantile), rel=0.05)


def test_noisier_reference_gives_a_higher_threshold() -> None:
    """Same marginal spread per row, but one feature wanders from day to day: its own windows differ more."""
    df, rng, dates = _panel(seed=4)
    day_shock = np.repeat(rng.normal(0, 1, len(dates)), 8)
    df["iid"] = rng.normal(0, 1, len(df)) * np.sqrt(2)
    df["wandering"] = day_shock + rng.normal(0, 1, len(df))
    out = feature_drift(df, ["iid", "wandering"], S).set_index("feature")
    assert out.loc["wandering", "threshold"] > 2 * out.loc["iid", "threshold"]


def test_date_level_features_are_tested_once_per_date() -> None:
    df, rng, dates = _panel(seed=5)
    per_date = rng.normal(0, 1, len(dates))
    per_date[-2:] += 2.5  # two unusual days in the current window
    df["vix_like"] = np.repeat(per_date, 8)
    per_date_out = feature_drift(df, ["vix_like"], S, date_level={"vix_like"}).iloc[0]
    assert (per_date_out.n_reference, per_date_out.n_current) == (S.reference_window, S.current_window)
    from scipy.stats import ks_2samp

    expected = ks_2samp(per_date[-(S.current_window + S.reference_window) : -S.current_window], per_date[-S.current_window :], method="exact").pvalue
    assert per_date_out.p_value == pytest.approx(expected)
    detected = feature_drift(df, ["vix_like"], S).iloc[0]  # None: detected as identical across tickers
    assert detected.n_current == S.current_window and detected.p_value == pytest.approx(expected)
    copies = feature_drift(df, ["vix_like"], S, date_level=set()).iloc[0]  # 8 copies taken as independent
    assert copies.n_current == 8 * S.current_window and copies.p_value < per_date_out.p_value / 100


def test_feature_drift_columns_and_order(features) -> None:
    out = feature_drift(features, ["stationary", "sparse", "shifted"], S)
    assert list(out.columns) == FEATURE_DRIFT_COLUMNS
    assert list(out.feature) == ["shifted", "stationary", "sparse"]  # effect, descending, NaN last


def test_feature_without_enough_values_is_not_flagged(features) -> None:
    row = feature_drift(features, ["stationary", "sparse"], S).set_index("feature").loc["sparse"]
    assert row.n_current == 0 and np.isnan(row.ks_statistic) and np.isnan(row.p_value_bh) and np.isnan(row.effect)
    assert not row.drifted


def test_empty_or_short_history_gives_untestable_rows(features) -> None:
    for rows in (features.iloc[:0], features.iloc[: 8 * S.current_window]):
        out = feature_drift(rows, ["stationary", "shifted"], S)
        assert list(out.columns) == FEATURE_DRIFT_COLUMNS and len(out) == 2
        assert out.effect.isna().all() and not out.drifted.any() and (out.n_reference == 0).all()


def test_feature_component_is_the_share_of_tested_features_drifted(features) -> None:
    out = feature_drift(features, ["stationary", "shifted", "sparse"], S)
    assert feature_component(out, S) == pytest.approx(0.5)
    assert feature_component(out.iloc[:0], S) == 0.0


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


def test_feature_drift_psi_and_ks_match_the_reference_functions(features) -> None:
    from scipy.stats import ks_2samp

    ref, cur = reference_and_current(features.date, S)
    row = feature_drift(features, ["shifted"], S).iloc[0]
    r, c = features.shifted[ref].to_numpy(), features.shifted[cur].to_numpy()
    assert row.psi == pytest.approx(psi(r, c, S.psi_bins))
    assert row.ks_statistic == pytest.approx(ks_2samp(r, c).statistic)


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


# ------------------------------------------------------------------------------------ prediction drift


def test_prediction_drift_mix_and_confidence() -> None:
    ref = np.array([[0.6, 0.2, 0.2]] * 5 + [[0.2, 0.2, 0.6]] * 5)  # half down, half up, confidence 0.6
    cur = np.array([[0.9, 0.05, 0.05]] * 4)  # all down, confidence 0.9
    component, table, info = prediction_drift(ref, cur, ["down", "flat", "up"])
    assert table.set_index("category").change.to_dict() == pytest.approx({"down": 0.5, "flat": 0.0, "up": -0.5})
    assert info["confidence_shift"] == pytest.approx(0.3)
    assert component == pytest.approx(max(0.5, 0.3 / (2 / 3)))
    assert prediction_drift(ref, ref, ["down", "flat", "up"])[0] == 0.0


def test_prediction_component_is_in_the_unit_interval() -> None:
    assert prediction_component(0.2, -0.9, 3) == 1.0
    assert prediction_component(0.4, 0.0, 3) == pytest.approx(0.4)
    assert prediction_component(float("nan"), float("nan"), 3) == 0.0


# ------------------------------------------------------------------------------------ drift score


@pytest.mark.parametrize(("feat", "regime", "pred"), [(0, 0, 0), (1, 1, 1), (0.3, 0.6, None), (1, 1, None), (0.2, 0, 0.9)])
def test_drift_score_is_in_the_unit_interval(feat, regime, pred) -> None:
    assert 0.0 <= drift_score(feat, regime, pred, S) <= 1.0


def test_drift_score_is_the_weighted_mean() -> None:
    total = S.weight_features + S.weight_regime + S.weight_predictions
    expected = (S.weight_features * 0.4 + S.weight_regime * 0.2 + S.weight_predictions * 0.8) / total
    assert drift_score(0.4, 0.2, 0.8, S) == pytest.approx(expected)


def test_drift_score_respreads_weights_without_prediction_drift() -> None:
    expected = (S.weight_features * 0.4 + S.weight_regime * 0.2) / (S.weight_features + S.weight_regime)
    assert drift_score(0.4, 0.2, None, S) == pytest.approx(expected)
    assert drift_score(0.4, 0.2, float("nan"), S) == pytest.approx(expected)
    assert drift_score(1.0, 1.0, None, S) == pytest.approx(1.0)  # full drift still reaches 1


# ------------------------------------------------------------------------------------ retraining policy

P = DriftSettings(score_threshold=0.5, persistence_days=3, cooldown_days=10)


def _run(scores: list[float], s: DriftSettings = P) -> list[dict]:
    return simulate_policy(pd.Series(scores, index=pd.bdate_range("2020-01-01", periods=len(scores))), s)


def test_one_odd_day_does_not_retrain() -> None:
    assert _run([0.1] * 5 + [0.9] + [0.1] * 5 + [0.9, 0.9] + [0.1] * 5) == []


def test_persistence_triggers_once_per_episode() -> None:
    triggers = _run([0.1] * 3 + [0.9] * 30)
    assert len(triggers) == 1
    t = triggers[0]
    assert (t["day"], t["episode_start"]) == ("2020-01-08", "2020-01-06")  # third day above
    assert t["score"] == 0.9 and "3 consecutive" in t["reason"]


def test_a_short_dip_does_not_end_the_episode() -> None:
    assert len(_run([0.9] * 5 + [0.1, 0.1] + [0.9] * 20)) == 1  # 2 < persistence_days below


def test_cooldown_suppresses_a_new_episode_then_releases_it() -> None:
    # episode 1 triggers on day 2 and ends after 3 days below; episode 2 starts on day 6, inside the
    # cooldown, persists from day 8 on, and triggers on day 12, 10 trading days after the first trigger
    days = pd.bdate_range("2020-01-01", periods=16).strftime("%Y-%m-%d")
    triggers = _run([0.9] * 3 + [0.1] * 3 + [0.9] * 10)
    assert [t["day"] for t in triggers] == [days[2], days[12]]
    assert triggers[1]["episode_start"] == days[6]


def test_new_episode_after_quiet_triggers_again() -> None:
    days = pd.bdate_range("2020-01-01", periods=26).strftime("%Y-%m-%d")
    triggers = _run([0.9] * 3 + [0.1] * 20 + [0.9] * 3)
    assert [(t["episode_start"], t["day"]) for t in triggers] == [(days[0], days[2]), (days[23], days[25])]


def test_episode_state_round_trips_and_ignores_replayed_days() -> None:
    state = EpisodeState()
    for day in ["2020-01-01", "2020-01-02"]:
        state, trig = step_episode(state, day, 0.9, P)
        assert trig is None
    restored = EpisodeState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state and "episode since 2020-01-01" in restored.summary()
    same, trig = step_episode(restored, "2020-01-02", 0.9, P)  # a day already seen changes nothing
    assert same == restored and trig is None
    _, trig = step_episode(restored, "2020-01-03", 0.9, P)
    assert trig is not None and trig["episode_start"] == "2020-01-01"


def test_nan_score_counts_as_below() -> None:
    assert _run([0.9, 0.9, float("nan"), 0.9, 0.1]) == []


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


def _random_market(n_tickers=40, n_days=120, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-01", periods=n_days)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_days, n_tickers)), axis=0))
    prices = pd.DataFrame(
        {"ticker": np.tile([f"T{i:02d}" for i in range(n_tickers)], n_days), "date": np.repeat(dates, n_tickers), "close": close.ravel()}
    )
    return prices, next_day_returns(prices)


def test_decile_book_holds_h_overlapping_sub_books_and_charges_costs():
    prices, rets = _random_market()
    # A fixed ranking (the ticker's number): the book fills over h days, then never trades.
    signals = rets[["ticker", "date"]].assign(score=rets.ticker.str[1:].astype(int))
    book = decile_book(signals, rets, horizon=5, quantile=0.1, cost_bps=10.0)
    assert (book.names == 8).all()  # 4 long + 4 short of 40
    np.testing.assert_allclose(book.turnover.iloc[:5], 0.4)  # each day 1/5 of the capital: 2 x 1/5 gross
    assert (book.turnover.iloc[5:] < 1e-12).all()
    np.testing.assert_allclose(book.net_return, book.gross_return - book.turnover * 10.0 / 1e4)
    long_ret = rets[rets.ticker.isin([f"T{i}" for i in range(36, 40)])].groupby("date").next_return.mean()
    short_ret = rets[rets.ticker.isin([f"T{i:02d}" for i in range(4)])].groupby("date").next_return.mean()
    np.testing.assert_allclose(book.gross_return.iloc[10:], (long_ret - short_ret).fillna(0).iloc[10:].to_numpy())
    s = book_summary(book)
    assert {"net_sharpe", "gross_sharpe", "avg_daily_turnover", "net_max_drawdown"} <= set(s)


def test_decile_book_earns_a_planted_signal_and_sees_no_future():
    prices, rets = _random_market(seed=1)
    fwd = prices.sort_values(["ticker", "date"]).groupby("ticker").close.shift(-5) / prices.sort_values(["ticker", "date"]).close - 1
    oracle = prices.sort_values(["ticker", "date"])[["ticker", "date"]].assign(score=fwd.to_numpy())
    noise = oracle.assign(score=np.random.default_rng(2).normal(size=len(oracle)))
    good = book_summary(decile_book(oracle, rets, horizon=5))
    bad = book_summary(decile_book(noise, rets, horizon=5))
    assert good["gross_sharpe"] > 5 and abs(bad["gross_sharpe"]) < 3 and bad["avg_daily_turnover"] > good["avg_daily_turnover"] * 0.5
    # Returns after day 60 changed: the book's returns up to day 59 stay, bit for bit.
    cut = rets.date.unique()[60]
    moved = rets.assign(next_return=np.where(rets.date >= cut, rets.next_return * 3 + 0.01, rets.next_return))
    a, b = decile_book(noise, rets, horizon=5), decile_book(noise, moved, horizon=5)
    pd.testing.assert_frame_equal(a[a.date < cut][["gross_return", "turnover"]], b[b.date < cut][["gross_return", "turnover"]])


def test_decile_book_never_breaks_ties_by_row_order():
    """A constant score (majority, always-up) ranks nothing: no positions, no returns, no Sharpe. (Breaking its
    ties by row order made an alphabetical long / short book, with a Sharpe of 0.97 on us-broad.) A two-valued
    score is long one value and short the other."""
    _, rets = _random_market()
    flat = decile_book(rets[["ticker", "date"]].assign(score=1.0), rets, horizon=5)
    assert (flat.names == 0).all() and (flat.gross_return == 0).all() and (flat.turnover == 0).all()
    assert np.isnan(book_summary(flat)["net_sharpe"])
    two = rets[["ticker", "date"]].assign(score=np.where(rets.ticker.str[1:].astype(int) < 10, 1.0, -1.0))
    book = decile_book(two, rets, horizon=1)
    assert (book.names == 40).all()
    long_ret = rets[rets.ticker.str[1:].astype(int) < 10].groupby("date").next_return.mean()
    short_ret = rets[rets.ticker.str[1:].astype(int) >= 10].groupby("date").next_return.mean()
    np.testing.assert_allclose(book.gross_return, (long_ret - short_ret).fillna(0).to_numpy(), atol=1e-12)
