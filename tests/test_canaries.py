"""Leakage canaries: the whole learning pipeline (features, triple-barrier labels, purged walk-forward
folds, base models, stacking, validation report) on markets with a known amount of signal.

- A random walk has nothing to find: the reported directional AUC stays within 0.5 +/- 0.02, the
  daily cross-sectional IC within three standard errors (0.029), the rank IC's t-statistic below 2, and
  the promotion gate (at its default thresholds) promotes nothing. (The one-vs-rest AUC is not 0.5 there: whether the
  triple barrier is touched at all - flat or not - follows the volatility estimate the barriers use,
  which range features can judge. It is reported, not used as a canary.)
- The real sample with its (label, forward return) pairs shuffled across tickers within each date: the
  same holds, and the gate refuses.
- A random walk with a planted signal (tomorrow's return follows today's volume shock): found, with a
  rank IC above 0.05, and the gate promotes it.

The canaries train on a quarter-size subset of the features (``quick_features``) with small models
so that they run in about a minute; every feature is separately proven free of look-ahead.
"""

from __future__ import annotations

import numpy as np
import pytest

from stockml_core.decisions.canary import canary_settings, evaluation_cycle, quick_features, random_walk_market
from stockml_core.decisions.promotion import evaluate_gate
from stockml_core.market import data as core_data
from stockml_core.settings import SAMPLE_DATA_DIR, GateSettings

NAMES = quick_features(every=6)
FAST = {"rf_trees": 20, "xgb_rounds": 25}


def test_random_walk_has_no_signal() -> None:
    prices, market, universe = random_walk_market(n_tickers=250, n_days=700, seed=11)
    evidence, report = evaluation_cycle(prices, market, universe, canary_settings(test_years=1.6, **FAST), feature_names=NAMES)
    h = evidence.headline
    assert h["n"] > 50_000
    # The mean daily IC's standard error under no signal: 1/sqrt(names - 1) a day, over the test days
    # counted once per horizon (5-day forward returns overlap): 0.0097 here (250 names, 212 days). The
    # old +/- 0.01 was one standard error, a coin flip per model; a leak shows tenfold (planted: > 0.05).
    days = h["n"] / 250
    se = (1 / np.sqrt(249)) / np.sqrt(days / 5)
    for model in ("candidate", "rf", "xgb", "logistic_momentum"):
        got = report[(report.scope == "overall") & (report.model == model)].set_index("metric").value
        assert abs(got["auc_direction"] - 0.5) <= 0.02, (model, got["auc_direction"])
        assert abs(got["ic"]) <= 3 * se and abs(got["rank_ic"]) <= 3 * se, (model, got["ic"], got["rank_ic"], se)
    # The candidate the gate judges: no ranking skill (measured: rank IC 0.0019, t 0.35), and refused. (Its
    # RandomForest part reaches t 3.1 on this draw, where the unfitted 12-1 momentum ranking reaches 1.98: the
    # draw's test window happens to reward momentum. With 212 days the overlap-corrected t is also about 1.2x
    # too wide under no skill; 1,000 days, the breadth issue's evaluation span, bring it to 1.0.)
    assert abs(h["rank_ic"]) <= 0.005 and abs(h["rank_ic_t"]) < 2.0, (h["rank_ic"], h["rank_ic_t"])
    decision = evaluate_gate(evidence, GateSettings())
    assert not decision.promoted, decision.reason
    assert {"rank_ic_t", "rank_ic_vs_best_baseline"} <= {c.name for c in decision.failed}


def test_shuffled_labels_on_the_real_sample_have_no_signal() -> None:
    prices, _ = core_data.load_prices(SAMPLE_DATA_DIR, None, "2008-01-01")
    market, _ = core_data.load_market(SAMPLE_DATA_DIR, "2008-01-01")
    universe = core_data.load_universe(SAMPLE_DATA_DIR)
    evidence, _ = evaluation_cycle(prices, market, universe, canary_settings(test_years=4.0, **FAST), shuffle_seed=3, feature_names=NAMES)
    h = evidence.headline
    assert h["n"] > 15_000
    assert abs(h["auc_direction"] - 0.5) <= 0.02 and abs(h["auc_ovr"] - 0.5) <= 0.02
    # 33 names: the mean daily IC's standard error under no signal is 1/sqrt(32) a day over the days counted
    # once per horizon, 0.015 here: the old +/- 0.01 was under one standard error.
    se = (1 / np.sqrt(32)) / np.sqrt(h["days"] / 5)
    assert abs(h["ic"]) <= 3 * se and abs(h["rank_ic"]) <= 3 * se and abs(h["rank_ic_t"]) < 2.0, (h["rank_ic"], se)
    decision = evaluate_gate(evidence, GateSettings())
    assert not decision.promoted, decision.reason


def test_a_planted_signal_is_found() -> None:
    prices, market, universe = random_walk_market(n_tickers=100, n_days=600, seed=2, planted=0.3)
    evidence, _ = evaluation_cycle(prices, market, universe, canary_settings(test_years=1.0, **FAST), feature_names=NAMES)
    h = evidence.headline
    assert h["auc_direction"] > 0.56 and h["ic"] > 0.05 and h["rank_ic"] > 0.05 and h["rank_ic_t"] > 2.0
    # A linear signal is what a ridge regression on every feature finds as well: the baseline sees it too.
    assert h["linear_all_rank_ic"] > 0.05


def test_a_planted_nonlinear_signal_is_found_and_promoted() -> None:
    """Unusual volume either way (|z| large) is followed by a rise: the trees find it, the linear and ranking
    baselines cannot, and the gate at its default thresholds promotes the candidate."""
    prices, market, universe = random_walk_market(n_tickers=100, n_days=600, seed=2, planted=0.4, shape="u")
    evidence, _ = evaluation_cycle(prices, market, universe, canary_settings(test_years=1.0, **FAST), feature_names=NAMES)
    h = evidence.headline
    assert h["rank_ic"] > 0.05 and h["rank_ic_t"] > 2.0
    assert h["linear_all_rank_ic"] < h["rank_ic"] / 2
    decision = evaluate_gate(evidence, GateSettings())
    assert decision.promoted, decision.reason
    # The logistic baseline sees only momentum, not volume: it stays blind (the signal is where it was planted).
    assert abs(h["logistic_momentum_auc_direction"] - 0.5) < 0.03


@pytest.mark.parametrize("planted", [0.0, 0.3])
def test_random_walk_market_shape(planted: float) -> None:
    prices, market, universe = random_walk_market(n_tickers=3, n_days=50, seed=0, planted=planted)
    assert len(prices) == 150 and len(market) == 50 and len(universe) == 3
    assert (prices.high >= prices[["open", "close"]].max(axis=1)).all()
    assert (prices.low <= prices[["open", "close"]].min(axis=1)).all()
    assert (prices.volume > 0).all() and (market.vix_close >= 9).all()
