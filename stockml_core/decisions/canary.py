"""Leakage canaries: synthetic markets with a known amount of signal, and one evaluation cycle.

``random_walk_market`` builds prices with no predictable structure by construction (independent
log-normal returns, volumes and intraday ranges); ``planted`` > 0 makes tomorrow's return follow
today's volume shock, a signal the features can see (``volume_z_20``). ``evaluation_cycle`` runs the
platform's own features, labels, regimes, training set, purged walk-forward models, stacking and
validation report on them (no mocks), optionally with the (label, forward return) pairs shuffled
across rows. The canary tests and ``benchmarks``' reports use them: an honest pipeline reports AUC
about 0.5 and IC about 0 where there is nothing to find, and finds what was planted.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from stockml_core.decisions.promotion import GateEvidence
from stockml_core.features import FEATURE_NAMES, FEATURE_REGISTRY, compute_features
from stockml_core.market.regimes import compute_regimes
from stockml_core.modeling import training
from stockml_core.modeling.backtest import decile_books, next_day_returns
from stockml_core.modeling.evaluation import ALL_BASELINES, validation_report
from stockml_core.modeling.labels import compute_labels
from stockml_core.settings import Settings

SECTORS = (
    "Energy",
    "Materials",
    "Industrials",
    "Consumer Discretionary",
    "Consumer Staples",
    "Health Care",
    "Financials",
    "Information Technology",
    "Communication Services",
    "Utilities",
    "Real Estate",
)


def random_walk_market(
    n_tickers: int, n_days: int, seed: int = 0, planted: float = 0.0, start: str = "2005-01-03", shape: str = "linear"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(prices, market, universe) of ``n_tickers`` independent random walks on business days.

    Daily log returns are N(0, 1.5%) (plus, with ``planted``, ``planted`` x 1.5% x yesterday's
    standardized log-volume shock z, or with ``shape="u"`` x (|z| - 0.8): names with unusual volume
    either way rise, ordinary ones fall, which no linear ranking of z can see); log volumes are i.i.d.; high and low add independent half-normal
    ranges. The market's S&P 500 is the equal-weight index of the stocks; VIX and the 10-year yield
    are independent mean-reverting noise.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=n_days)
    sigma = 0.015
    shock = rng.normal(size=(n_tickers, n_days))  # standardized log-volume innovations
    ret = rng.normal(0.0, sigma, size=(n_tickers, n_days))
    if planted:
        signal = shock[:, :-1] if shape == "linear" else np.abs(shock[:, :-1]) - 0.8  # E|z| = 0.80
        ret[:, 1:] += planted * sigma * signal
    close = 50.0 * np.exp(np.cumsum(ret, axis=1))
    open_ = close * np.exp(rng.normal(0.0, 0.004, size=close.shape))
    top = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.006, size=close.shape)))
    bottom = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.006, size=close.shape)))
    volume = np.round(np.exp(13.0 + 0.4 * shock))
    names = [f"RW{i:03d}" for i in range(n_tickers)]
    prices = pd.DataFrame(
        {
            "ticker": np.repeat(names, n_days),
            "date": np.tile(dates, n_tickers),
            "open": open_.ravel(),
            "high": top.ravel(),
            "low": bottom.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel(),
        }
    )
    index = 1000.0 * np.exp(np.cumsum(np.log(close[:, 1:] / close[:, :-1]).mean(axis=0)))
    vix = np.empty(n_days)
    dgs = np.empty(n_days)
    vix[0], dgs[0] = 18.0, 4.0
    for t in range(1, n_days):  # small AR(1) loops over days, once per market
        vix[t] = vix[t - 1] + 0.05 * (18.0 - vix[t - 1]) + rng.normal(0.0, 0.8)
        dgs[t] = dgs[t - 1] + 0.01 * (4.0 - dgs[t - 1]) + rng.normal(0.0, 0.04)
    market = pd.DataFrame({"date": dates, "spx_close": np.concatenate([[1000.0], index]), "vix_close": np.maximum(vix, 9.0), "dgs10": dgs})
    universe = pd.DataFrame({"ticker": names, "name": names, "gics_sector": [SECTORS[i % len(SECTORS)] for i in range(n_tickers)]})
    return prices, market, universe


def evaluation_cycle(
    prices: pd.DataFrame,
    market: pd.DataFrame,
    universe: pd.DataFrame,
    settings: Settings,
    shuffle_seed: int | None = None,
    feature_names: list[str] | None = None,
) -> tuple[GateEvidence, pd.DataFrame]:
    """One training cycle's out-of-sample evaluation: (the gate's evidence, long validation report).

    The evidence is ``promotion.GateEvidence.measure`` of the report and every model's decile book, as
    ``promotion_decision`` builds it in production (no replay buffer, nothing published yet).

    With ``shuffle_seed`` the targets (label, forward and excess return, rank) are permuted across the
    tickers of each date before training: every day keeps its own returns (the market's move, its
    dispersion), but which name earns them is random, so no feature can rank them any more. ``feature_names`` (default: all) trains on a
    subset, to keep a canary fast (every feature is proven free of look-ahead on its own).
    """
    names = list(FEATURE_NAMES if feature_names is None else feature_names)
    features = compute_features(prices, market, universe[["ticker", "gics_sector"]])
    labels = compute_labels(prices, settings.labels)
    if shuffle_seed is not None:
        rows = np.flatnonzero(labels.label.notna().to_numpy())
        day = labels.date.to_numpy()[rows]
        by_day = rows[np.lexsort((rows, day))]  # each date's rows, in order ...
        shuffled = rows[np.lexsort((np.random.default_rng(shuffle_seed).random(len(rows)), day))]  # ... and permuted
        for col in ("label", "fwd_return", "excess_return", "target_rank"):
            values = labels[col].to_numpy().copy()
            values[by_day] = values[shuffled]
            labels[col] = values
    samples = training.model_samples(features, labels, compute_regimes(market), universe)
    no_events = pd.DataFrame({"ticker": pd.Series(dtype=str), "date": pd.Series(dtype="datetime64[ns]"), "event": pd.Series(dtype=str)})
    ts = training.build_training_set(samples, no_events, None, names, settings)
    rf = training.train_base_model("rf", ts, names, settings)
    xgb = training.train_base_model("xgb", ts, names, settings)
    _, ev = training.stack(ts, rf, xgb, names, settings)
    report = validation_report(ev, settings.labels.horizon)
    _, books = decile_books(ev, next_day_returns(prices), ["candidate", "rf", "xgb", *ALL_BASELINES], settings.labels.horizon, settings.cost_bps)
    return GateEvidence.measure(report, books), report


def canary_settings(**training_changes) -> Settings:
    """Small, fast models (the canaries test the pipeline's honesty, not the models' strength)."""
    base = Settings()
    changes = {"rf_trees": 30, "xgb_rounds": 40, "n_folds": 3, "test_years": 1.0, **training_changes}
    return base.with_(training=replace(base.training, **changes))


def quick_features(max_lookback: int = 60, every: int = 4) -> list[str]:
    """Every ``every``-th registry feature with a warm-up of at most ``max_lookback`` rows (all families)."""
    return [s.name for s in FEATURE_REGISTRY if s.lookback <= max_lookback][::every]
