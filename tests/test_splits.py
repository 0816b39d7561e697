"""Tests of purged, embargoed walk-forward splits and of the weighted training set."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml_core.market.data import load_market, load_prices, load_rare_events, load_universe
from stockml_core.market.events import build_archive, build_catalog
from stockml_core.market.regimes import compute_regimes
from stockml_core.modeling.labels import compute_labels
from stockml_core.modeling.splits import purged_walk_forward
from stockml_core.modeling.training import build_training_set, folds_for, model_samples, trainable
from stockml_core.settings import Settings, TrainingSettings

DATA = Path(__file__).resolve().parent.parent / "data" / "sample"
TICKERS = ("JPM", "KO", "XOM", "MSFT")
H = 5
N_FOLDS = 4
TEST_START = pd.Timestamp("2009-01-01")
FEATURES = ["ret_5d", "vol_scaled"]


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return load_prices(DATA, tickers=TICKERS, start="2005-01-01", end="2010-12-31")[0]


@pytest.fixture(scope="module")
def dates(prices) -> pd.Series:
    # Row order as a panel is stored (ticker-major), so row positions and date order differ.
    return prices.date


@pytest.fixture(scope="module")
def folds(dates):
    return purged_walk_forward(dates, TEST_START, N_FOLDS, H)


def _calendar_positions(dates: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    calendar = np.unique(dates.to_numpy())
    return calendar, np.searchsorted(calendar, dates.to_numpy())


# ------------------------------------------------------------------------------------ purged_walk_forward


def test_training_label_windows_end_before_the_test_start(dates, folds) -> None:
    calendar, pos = _calendar_positions(dates)
    for f in folds:
        a = int(np.searchsorted(calendar, f.test_start.to_datetime64()))
        assert len(f.train_idx)
        assert (pos[f.train_idx] + H < a).all(), f.fold  # label window (t, t+h] ends strictly before


def test_embargo_gap_is_at_least_horizon_plus_one_trading_days(dates, folds) -> None:
    calendar, pos = _calendar_positions(dates)
    for f in folds:
        a = int(np.searchsorted(calendar, f.test_start.to_datetime64()))
        days_between = a - pos[f.train_idx].max() - 1  # trading days strictly between train end and test start
        assert days_between >= H + 1, f.fold


def test_train_dates_precede_test_start(dates, folds) -> None:
    for f in folds:
        assert (dates.iloc[f.train_idx] < f.test_start).all()
        assert f.train_end == dates.iloc[f.train_idx].max()
        assert f.train_end < f.test_start


def test_test_blocks_are_contiguous_ordered_and_cover_the_span(dates, folds) -> None:
    calendar, pos = _calendar_positions(dates)
    assert [f.fold for f in folds] == list(range(N_FOLDS))
    all_test = np.concatenate([f.test_idx for f in folds])
    assert len(all_test) == len(np.unique(all_test)), "test blocks overlap"
    np.testing.assert_array_equal(np.sort(all_test), np.flatnonzero((dates >= TEST_START).to_numpy()))
    for f in folds:
        block = np.unique(pos[f.test_idx])
        assert (np.diff(block) == 1).all(), "a test block skips a trading day"
        assert calendar[block[0]] == f.test_start.to_datetime64()
        assert calendar[block[-1]] == f.test_end.to_datetime64()
    for prev, nxt in pairwise(folds):
        assert prev.test_end < nxt.test_start
        assert np.searchsorted(calendar, nxt.test_start.to_datetime64()) == np.searchsorted(calendar, prev.test_end.to_datetime64()) + 1
    assert folds[0].test_start == calendar[calendar >= TEST_START.to_datetime64()][0]
    assert folds[-1].test_end == dates.max()


def test_test_blocks_have_near_equal_lengths(dates, folds) -> None:
    _, pos = _calendar_positions(dates)
    lengths = [len(np.unique(pos[f.test_idx])) for f in folds]
    assert max(lengths) - min(lengths) <= 1


def test_expanding_window_starts_at_the_first_date(dates, folds) -> None:
    for f in folds:
        assert dates.iloc[f.train_idx].min() == dates.min()
    sizes = [len(f.train_idx) for f in folds]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_embargo_shorter_than_horizon_plus_one_raises(dates) -> None:
    with pytest.raises(ValueError, match="embargo"):
        purged_walk_forward(dates, TEST_START, N_FOLDS, H, embargo=H)


def test_longer_embargo_widens_the_gap(dates) -> None:
    calendar, pos = _calendar_positions(dates)
    for f in purged_walk_forward(dates, TEST_START, N_FOLDS, H, embargo=20):
        a = int(np.searchsorted(calendar, f.test_start.to_datetime64()))
        assert a - pos[f.train_idx].max() - 1 >= 20


def test_train_window_makes_training_slide(dates) -> None:
    window = 250
    calendar, pos = _calendar_positions(dates)
    folds = purged_walk_forward(dates, TEST_START, N_FOLDS, H, train_window=window)
    starts = [dates.iloc[f.train_idx].min() for f in folds]
    assert starts == sorted(starts) and starts[0] < starts[-1], "the window does not move"
    for f in folds:
        span = np.unique(pos[f.train_idx])
        assert len(span) == window  # every day of the slice trades all four tickers
        assert (pos[f.train_idx] + H < np.searchsorted(calendar, f.test_start.to_datetime64())).all()


def test_too_few_test_days_raises(dates) -> None:
    with pytest.raises(ValueError, match="test days"):
        purged_walk_forward(dates, dates.max(), N_FOLDS, H)


# ------------------------------------------------------------------------------------ build_training_set


@pytest.fixture(scope="module")
def samples(prices) -> pd.DataFrame:
    labels = compute_labels(prices)
    features = labels[["ticker", "date"]].assign(ret_5d=labels.past_return, vol_scaled=labels.vol_scale)
    regimes = compute_regimes(load_market(DATA, start="2005-01-01", end="2010-12-31")[0])
    return model_samples(features, labels, regimes, load_universe(DATA, TICKERS))


@pytest.fixture(scope="module")
def archive(samples) -> pd.DataFrame:
    return build_archive(samples, build_catalog(load_rare_events(DATA)))


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(tickers=TICKERS, training=TrainingSettings(recent_years=2.0, test_years=1.0))


@pytest.fixture(scope="module")
def replay(samples) -> pd.DataFrame:
    rows = trainable(samples, FEATURES)
    rng = np.random.default_rng(3)
    picked = rows.sample(frac=0.5, random_state=4)[["ticker", "date"]]
    return picked.assign(error_score=rng.uniform(0.4, 1.0, len(picked))).reset_index(drop=True)


def test_training_set_without_replay_holds_recent_and_archive(samples, archive, settings) -> None:
    ts = build_training_set(samples, archive, None, FEATURES, settings)
    assert set(ts.source) == {"recent", "archive"}
    cutoff = ts.date.max() - pd.DateOffset(days=int(round(2.0 * 365.25)))
    assert (ts.loc[ts.source == "recent", "date"] > cutoff).all()
    old = ts[ts.source == "archive"]
    assert (old.date <= cutoff).all() and old.event.notna().all()
    assert set(old.event) == {"financial_crisis_2007_2009"}  # the only event window before the cutoff
    assert (ts.weight[ts.source == "recent"] == 1.0).all()
    assert ts.label.dtype.kind == "i" and not ts.duplicated(["ticker", "date"]).any()


def test_training_set_drops_old_rows_outside_events(samples, archive, settings) -> None:
    ts = build_training_set(samples, archive, None, FEATURES, settings)
    rows = trainable(samples, FEATURES)
    cutoff = rows.date.max() - pd.DateOffset(days=int(round(2.0 * 365.25)))
    in_event = rows.merge(archive[["ticker", "date"]], on=["ticker", "date"]).shape[0]
    expected = int((rows.date > cutoff).sum()) + int(rows[rows.date <= cutoff].merge(archive[["ticker", "date"]], on=["ticker", "date"]).shape[0])
    assert in_event > 0
    assert len(ts) == expected


def test_training_set_marks_replay_rows_with_weight_three(samples, archive, replay, settings) -> None:
    ts = build_training_set(samples, archive, replay, FEATURES, settings)
    assert set(ts.source) == {"recent", "archive", "replay"}
    assert settings.training.replay_weight == 3.0
    assert (ts.weight[ts.source == "replay"] == 3.0).all()
    assert (ts.weight[ts.source != "replay"] == 1.0).all()
    assert not ts.duplicated(["ticker", "date"]).any()


def test_training_set_caps_replay_at_twenty_percent(samples, archive, replay, settings) -> None:
    plain = build_training_set(samples, archive, None, FEATURES, settings)
    ts = build_training_set(samples, archive, replay, FEATURES, settings)
    assert len(ts) == len(plain), "replay re-weights rows, it does not add them"
    n_replay = int((ts.source == "replay").sum())
    assert len(replay) > 0.2 * len(ts)  # the cap binds
    assert 0 < n_replay <= int(settings.training.replay_max_share * len(ts))


def test_training_set_replays_the_worst_errors_first(samples, archive, replay, settings) -> None:
    ts = build_training_set(samples, archive, replay, FEATURES, settings)
    scored = ts.merge(replay, on=["ticker", "date"], how="left")
    replayed = scored.error_score[scored.source == "replay"]
    passed_over = scored.error_score[(scored.source != "replay") & scored.error_score.notna()]
    assert replayed.min() >= passed_over.max()


def test_folds_for_cover_the_last_test_years(samples, archive, settings) -> None:
    ts = build_training_set(samples, archive, None, FEATURES, settings)
    folds = folds_for(ts, settings)
    assert len(folds) == settings.training.n_folds
    assert folds[-1].test_end == ts.date.max()
    assert folds[0].test_start > ts.date.max() - pd.DateOffset(days=366)


def test_folds_for_slide_with_a_training_window(samples, archive, settings) -> None:
    from dataclasses import replace

    sliding = settings.with_(training=replace(settings.training, train_window_days=250))
    ts = build_training_set(samples, archive, None, FEATURES, sliding)
    calendar = np.unique(ts.date.to_numpy())
    for f in folds_for(ts, sliding):
        days = np.searchsorted(calendar, ts.date.to_numpy()[f.train_idx])
        assert days.max() - days.min() < 250 + 1  # at most the window
        assert np.searchsorted(calendar, np.datetime64(f.test_start)) - days.max() > H  # purge + embargo kept
