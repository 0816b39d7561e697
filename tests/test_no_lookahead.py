"""No look-ahead in regimes and the backward-looking label columns; the label looks forward by exactly h days."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml_core.market.data import load_market, load_prices
from stockml_core.market.regimes import REGIMES, compute_regimes
from stockml_core.modeling.labels import compute_labels
from stockml_core.settings import LabelSettings

DATA = Path(__file__).resolve().parent.parent / "data" / "sample"
MARKET_VALUES = ["spx_close", "vix_close", "dgs10"]
H = LabelSettings().horizon
N_CUTS = 6


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    return load_market(DATA, end="2017-12-31")[0]


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    # KO and XOM trade every day of the slice; PSA joins in 2005 (a ragged panel).
    return load_prices(DATA, tickers=("KO", "PSA", "XOM"), start="2004-06-01", end="2006-12-31")[0]


def _cuts(dates: pd.Series, seed: int, margin: int = 30) -> list[pd.Timestamp]:
    days = np.sort(pd.to_datetime(dates).unique())
    rng = np.random.default_rng(seed)
    return [pd.Timestamp(d) for d in rng.choice(days[margin:-margin], size=N_CUTS, replace=False)]


def _perturb_after(frame: pd.DataFrame, cut: pd.Timestamp, columns: list[str], seed: int, low: float = 0.5, high: float = 2.0) -> pd.DataFrame:
    """Every value dated after ``cut`` multiplied by its own random factor."""
    out = frame.copy()
    after = (out.date > cut).to_numpy()
    rng = np.random.default_rng(seed)
    for col in columns:
        out.loc[after, col] = out.loc[after, col].to_numpy() * rng.uniform(low, high, after.sum())
    return out


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f":
        return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))
    return np.array_equal(a, b)


# ------------------------------------------------------------------------------------ regimes


def test_regimes_use_no_data_after_the_cut(market) -> None:
    base = compute_regimes(market)
    assert set(base.regime) == set(REGIMES)  # the window holds every regime, crashes included
    for i, cut in enumerate(_cuts(market.date, seed=11)):
        moved = compute_regimes(_perturb_after(market, cut, MARKET_VALUES, seed=i))
        upto = (base.date <= cut).to_numpy()
        for col in ["regime", "vix_close", "spx_drawdown", "spx_return_20d"]:
            assert _bitwise_equal(base[col].to_numpy()[upto], moved[col].to_numpy()[upto]), (cut, col)
        assert not np.array_equal(base.spx_drawdown[~upto], moved.spx_drawdown[~upto])  # the perturbation bit


def test_regimes_of_a_truncated_history_equal_the_full_history(market) -> None:
    base = compute_regimes(market)
    for cut in _cuts(market.date, seed=12):
        short = compute_regimes(market[market.date <= cut])
        pd.testing.assert_frame_equal(short, base[base.date <= cut].reset_index(drop=True), check_exact=True)


def test_regimes_do_not_depend_on_row_order(market) -> None:
    shuffled = market.sample(frac=1.0, random_state=5)
    pd.testing.assert_frame_equal(compute_regimes(shuffled), compute_regimes(market), check_exact=True)


# ------------------------------------------------------------------------------------ labels


def _positions(labels: pd.DataFrame) -> np.ndarray:
    return labels.groupby("ticker", sort=False).cumcount().to_numpy()


def _first_moved_position(labels: pd.DataFrame, cut: pd.Timestamp) -> np.ndarray:
    """Per row: the position in its ticker's history of the first row dated after ``cut``."""
    return labels.groupby("ticker", sort=False).date.transform(lambda d: int((d <= cut).sum())).to_numpy()


def test_backward_looking_label_columns_use_no_data_after_the_cut(prices) -> None:
    base = compute_labels(prices)
    for i, cut in enumerate(_cuts(prices.date, seed=21)):
        moved = compute_labels(_perturb_after(prices, cut, ["close"], seed=100 + i))
        upto = (base.date <= cut).to_numpy()
        for col in ["past_return", "vol_scale"]:
            assert _bitwise_equal(base[col].to_numpy()[upto], moved[col].to_numpy()[upto]), (cut, col)


def test_label_ignores_data_after_t_plus_horizon(prices) -> None:
    base = compute_labels(prices)
    pos = _positions(base)
    for i, cut in enumerate(_cuts(prices.date, seed=22)):
        moved = compute_labels(_perturb_after(prices, cut, ["close"], seed=200 + i))
        window_before_cut = pos + H < _first_moved_position(base, cut)  # (t, t+h] ends on or before the cut
        assert window_before_cut.any()
        for col in ["label", "fwd_return"]:
            assert _bitwise_equal(base[col].to_numpy()[window_before_cut], moved[col].to_numpy()[window_before_cut]), (cut, col)


def test_label_looks_forward_exactly_horizon_days(prices) -> None:
    base = compute_labels(prices)
    pos = _positions(base)
    for i, cut in enumerate(_cuts(prices.date, seed=23)):
        moved = compute_labels(_perturb_after(prices, cut, ["close"], seed=300 + i))
        first = _first_moved_position(base, cut)
        reaches = (pos < first) & (pos + H >= first) & np.isfinite(base.fwd_return.to_numpy())
        assert reaches.any()
        # Every row whose horizon ends after the cut sees the perturbed close: its forward return moves.
        assert (base.fwd_return.to_numpy()[reaches] != moved.fwd_return.to_numpy()[reaches]).all(), cut


BARRIERS = LabelSettings(target="triple_barrier")


def test_label_follows_the_first_barrier_crossed(prices) -> None:
    ko = prices[prices.ticker == "KO"].reset_index(drop=True)
    t = 100
    for factor, expected in [(2.0, 2.0), (0.5, 0.0)]:
        moved = ko.copy()
        moved.loc[t + 1 :, "close"] *= factor  # a jump on day t + 1 and after: its barrier is crossed on day 1
        before = compute_labels(ko, BARRIERS)
        after = compute_labels(moved, BARRIERS)
        assert after.label[t] == expected and after.barrier_day[t] == 1
        assert after.vol_scale[t] == before.vol_scale[t]
        # Rows whose horizon ends on or before t are untouched.
        assert np.array_equal(after.label.iloc[: t - H + 1], before.label.iloc[: t - H + 1], equal_nan=True)


def test_label_is_nan_where_the_horizon_runs_past_the_data(prices) -> None:
    labels = compute_labels(prices)
    tail = labels.groupby("ticker").tail(H)
    assert tail.label.isna().all() and tail.fwd_return.isna().all()
    body = labels.drop(tail.index)
    assert body.fwd_return.notna().all()
    assert set(body.label.dropna().unique()) <= {0.0, 1.0, 2.0}
