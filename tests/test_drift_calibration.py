"""Tests of the drift policy's history replay: crash onsets, quiet days, daily scores (stockml_core.decisions.drift)."""

import numpy as np
import pandas as pd
import pytest

from stockml_core.decisions.drift import (
    MARKET_STATES,
    crash_onsets,
    daily_drift_scores,
    date_level_features,
    feature_drift,
    market_states,
    quiet_days,
    simulate_policy,
)
from stockml_core.features import registry_frame
from stockml_core.market.data import load_market
from stockml_core.market.regimes import REGIMES, compute_regimes
from stockml_core.settings import SAMPLE_DATA_DIR, DriftSettings

S = DriftSettings()


def _market(spx: list[float], vix: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=len(spx)), "spx_close": spx, "vix_close": vix})


def test_onset_on_the_first_day_of_a_10pct_drawdown_or_vix_above_30() -> None:
    spx = [100, 101, 95, 91, 90.8, 90, 92]  # peak 101: -10% first at 90.8 (day 4)
    m = _market(spx, [15] * 7)
    assert crash_onsets(m) == [m.date[4]]
    m = _market([100] * 7, [15, 18, 25, 31, 35, 28, 15])  # VIX above 30 first on day 3
    assert crash_onsets(m) == [m.date[3]]
    assert crash_onsets(_market([100] * 3, [15, 30, 15])) == []  # 30 is not above 30


def test_a_new_onset_needs_a_quiet_day_in_between() -> None:
    vix = [15, 35, 25, 35, 19, 35]  # day 2 is not quiet (VIX 25), day 4 is
    m = _market([100] * 6, vix)
    assert crash_onsets(m) == [m.date[1], m.date[5]]
    # drawdown still below -5% on the calm-VIX day: not quiet, no new onset
    m = _market([100, 89, 94, 94, 89], [15, 15, 15, 15, 15])
    assert crash_onsets(m) == [m.date[1]]


def test_quiet_run_asks_for_consecutive_quiet_days_before_a_new_onset() -> None:
    vix = [15, 35, 19, 19, 25, 35, 19, 19, 19, 35]  # 2 quiet days, then 3, before the later spikes
    m = _market([100] * len(vix), vix)
    assert crash_onsets(m) == [m.date[1], m.date[5], m.date[9]]
    assert crash_onsets(m, quiet_run=3) == [m.date[1], m.date[9]]


def test_quiet_days_need_low_vix_and_a_shallow_drawdown() -> None:
    m = _market([100, 96, 94, 100, 100], [15, 15, 15, 20, 19.9])
    assert quiet_days(m).tolist() == [True, True, False, False, True]
    assert quiet_days(m).index.equals(pd.DatetimeIndex(m.date))


def test_real_sample_onsets() -> None:
    market, _ = load_market(SAMPLE_DATA_DIR, end="2017-11-10")
    onsets = [f"{d:%Y-%m-%d}" for d in crash_onsets(market)]
    assert onsets[:3] == ["1990-01-30", "1990-08-06", "1997-10-27"]
    assert {"2008-01-08", "2015-08-24", "2016-01-13"} <= set(onsets) and len(onsets) == 13
    assert "2008-09-15" not in onsets  # Lehman: the 2007-08 drawdown never came back above -5%


def test_a_falling_normal_market_is_a_correction_state() -> None:
    reg = pd.DataFrame(
        {
            "regime": ["normal", "normal", "normal", "high_volatility", "recovery", "crash"],
            "spx_drawdown": [-0.09, -0.09, -0.07, -0.09, -0.12, -0.20],
            "spx_return_20d": [-0.06, -0.04, -0.06, -0.06, 0.01, -0.10],
        }
    )
    # only the first: the second falls too little, the third is too close to its peak, the others
    # are in a regime already
    assert market_states(reg, S).tolist() == ["correction", "normal", "normal", "high_volatility", "recovery", "crash"]
    assert set(MARKET_STATES) == {*REGIMES, "correction"}


def test_market_states_on_the_sample_catch_january_2008_and_ignore_the_future() -> None:
    market, _ = load_market(SAMPLE_DATA_DIR)
    market = market[(market.date >= "2006-01-01") & (market.date <= "2009-12-31")].reset_index(drop=True)
    reg = compute_regimes(market)
    states = market_states(reg, S).set_axis(pd.DatetimeIndex(reg.date))
    # the days after the 2008-01-08 crash onset: the S&P 500 10% below its peak and 7% down over 20
    # days, the VIX back under 25: regime normal, state correction; the quiet first half of 2007 has none
    assert reg.set_index("date").regime["2008-01-09"] == "normal" and states["2008-01-09"] == "correction"
    assert (states["2007-01-01":"2007-06-30"] == "normal").all()
    # no look-ahead: the states up to 2008-01-09 are the same when the later prices are changed
    cut = market.date <= "2008-01-09"
    changed = market.assign(spx_close=np.where(cut, market.spx_close, market.spx_close * 3), vix_close=np.where(cut, market.vix_close, 80.0))
    again = market_states(compute_regimes(changed), S)
    assert again[cut.to_numpy()].tolist() == states[cut.to_numpy()].tolist()


def test_date_level_features_are_the_market_family() -> None:
    reg = registry_frame()
    level = date_level_features()
    assert level == set(reg.feature[reg.family == "market"])
    assert {"vix_level", "spx_drawdown"} <= level and "beta_spx_60" not in level  # beta is per ticker


def test_daily_drift_scores_match_feature_drift_on_each_day() -> None:
    rng = np.random.default_rng(8)
    dates = pd.bdate_range("2019-01-01", periods=280)
    n = 6
    f = pd.DataFrame({"date": np.repeat(dates, n), "ticker": np.tile([f"T{i}" for i in range(n)], len(dates))})
    f["a"] = rng.normal(size=len(f)) + 3.0 * (f.date >= dates[-3]).to_numpy()
    f["b"] = rng.normal(size=len(f))
    f = f.sample(frac=1.0, random_state=0)  # any row order
    regimes = pd.DataFrame({"date": dates, "regime": ["normal"] * 277 + ["crash"] * 3, "spx_drawdown": 0.0, "spx_return_20d": 0.0})
    s = DriftSettings()
    days = dates[-4:]
    out = daily_drift_scores(f, regimes, ["a", "b"], s, set(), days)
    assert list(out.index) == list(days)
    assert {"score", "features", "regime", "n_drifted", "n_tested", "transition"} <= set(out.columns)
    assert out.score.between(0, 1).all()
    last = feature_drift(f[f.date.isin(dates[-(s.current_window + s.reference_window) :])], ["a", "b"], s, set())
    assert out.n_drifted.iloc[-1] == last.drifted.sum() == 1
    assert out.regime.iloc[-1] == pytest.approx(3 / s.current_window)
    assert out.transition.iloc[-1] == "normal -> crash" and out.transition.iloc[0] == "none"
    assert out.score.iloc[-1] > out.score.iloc[0]
    # the regime part is the mix of market states: a falling market under a calm VIX shifts it too
    falling = regimes.assign(regime="normal", spx_drawdown=np.r_[[0.0] * 277, [-0.1] * 3], spx_return_20d=np.r_[[0.0] * 277, [-0.06] * 3])
    out = daily_drift_scores(f, falling, ["a", "b"], s, set(), days)
    assert out.regime.iloc[-1] == pytest.approx(3 / s.current_window)
    assert out.transition.iloc[-1] == "normal -> correction"


def test_simulate_policy_on_a_planted_episode() -> None:
    s = DriftSettings()
    days = pd.bdate_range("2020-01-01", periods=60)
    scores = pd.Series(0.0, index=days)
    scores.iloc[20:30] = 1.0
    triggers = simulate_policy(scores, s)
    assert len(triggers) == 1
    assert triggers[0]["day"] == f"{days[20 + s.persistence_days - 1]:%Y-%m-%d}"
    assert triggers[0]["episode_start"] == f"{days[20]:%Y-%m-%d}"
