"""Triple-barrier labels: the first barrier crossed decides, on hand-made paths with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stockml_core.modeling.labels import compute_labels
from stockml_core.settings import LabelSettings

S = LabelSettings(horizon=5, vol_window=20, threshold=1.0, target="triple_barrier")


def _ticker(path_after: list[float], name: str = "AAA") -> pd.DataFrame:
    """30 days alternating +/-1% (daily vol about 1.02%), then the given closes relative to day 29."""
    warm = 100 * np.cumprod([1.0] + [1.01 if i % 2 else 1 / 1.01 for i in range(29)])
    close = np.concatenate([warm, warm[-1] * np.asarray(path_after)])
    dates = pd.bdate_range("2020-01-01", periods=len(close))
    return pd.DataFrame({"ticker": name, "date": dates, "open": close, "high": close, "low": close, "close": close, "volume": 1e6})


def _row29(path_after: list[float]) -> pd.Series:
    labels = compute_labels(_ticker(path_after), S)
    return labels.iloc[29]


def test_first_barrier_crossed_decides_even_if_the_horizon_ends_elsewhere() -> None:
    # Barrier: 1.0 x ~1.02% x sqrt(5) ~ 2.3%. Up 3% on day 2, then down 5% by day 5: still "up".
    row = _row29([1.00, 1.03, 1.0, 0.97, 0.95, 0.95])
    assert row.label == 2.0 and row.barrier_day == 2.0
    assert np.isclose(row.fwd_return, -0.05)  # the h-day return is kept for the IC, whatever the label
    row = _row29([0.99, 0.97, 1.05, 1.05, 1.05, 1.05])
    assert row.label == 0.0 and row.barrier_day == 2.0


def test_no_barrier_crossed_is_flat_at_the_vertical_barrier() -> None:
    row = _row29([1.01, 1.02, 1.01, 0.99, 1.01, 1.0])
    assert row.label == 1.0 and row.barrier_day == 5.0


def test_a_touch_after_the_horizon_does_not_count() -> None:
    row = _row29([1.0, 1.0, 1.0, 1.0, 1.0, 1.2])  # day 6 is outside the 5-day horizon
    assert row.label == 1.0


def test_barrier_scales_with_trailing_volatility() -> None:
    i = np.arange(45)
    close = (100 + 1e-3 * (i % 2)) * np.where(i >= 31, 1.002, 1.0)  # a near-flat history, then +0.2%
    calm = pd.DataFrame(
        {
            "ticker": "AAA",
            "date": pd.bdate_range("2020-01-01", periods=len(i)),
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 1e6,
        }
    )
    labels = compute_labels(calm, S)
    assert labels.vol_scale.iloc[29] == np.sqrt(5) * 1e-4  # the volatility floor
    assert labels.label.iloc[29] == 2.0  # 0.2% crosses a barrier of 0.022%
    assert compute_labels(_ticker([1.0, 1.0, 1.002, 1.0, 1.0, 1.0]), S).label.iloc[29] == 1.0  # not a 2.3% one


def test_tail_without_a_full_horizon_is_nan_and_tickers_do_not_mix() -> None:
    both = pd.concat([_ticker([1.0] * 8, "AAA"), _ticker([1.1] * 8, "BBB")], ignore_index=True)
    labels = compute_labels(both, S)
    for _, g in labels.groupby("ticker"):
        assert g.label.iloc[-5:].isna().all() and g.barrier_day.iloc[-5:].isna().all()
        assert g.label.iloc[:20].isna().all()  # no 20-day trailing volatility yet
        assert g.label.iloc[20:-5].notna().all()


# ----------------------------------------------------------------------------- cross-sectional targets


def _panel(n_tickers: int = 12, n_days: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_days)
    rows = []
    for i in range(n_tickers):
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n_days)))
        rows.append(pd.DataFrame({"ticker": f"T{i:02d}", "date": dates, "open": close, "high": close, "low": close, "close": close, "volume": 1e6}))
    sectors = pd.DataFrame(
        {"ticker": [f"T{i:02d}" for i in range(n_tickers)], "gics_sector": ["Energy" if i % 2 else "Utilities" for i in range(n_tickers)]}
    )
    return pd.concat(rows, ignore_index=True), sectors


def test_market_neutral_terciles_rank_each_day_against_its_peers() -> None:
    prices, sectors = _panel()
    lab = compute_labels(prices, LabelSettings(target="market_neutral"))
    day = lab[lab.date == lab.date.unique()[10]]
    np.testing.assert_allclose(day.excess_return, day.fwd_return - day.fwd_return.mean())
    # Terciles by the day's ranks: the 4 lowest of 12 down, the 4 highest up, about a third each overall.
    order = day.sort_values("fwd_return").label.to_numpy()
    assert list(order) == [0.0] * 4 + [1.0] * 4 + [2.0] * 4
    mix = lab.label.value_counts(normalize=True)
    assert all(abs(mix[c] - 1 / 3) < 0.01 for c in (0.0, 1.0, 2.0))
    # The common move of the day is gone: adding the same return to every name changes no label.
    shifted = prices.copy()
    bump = shifted.date.map(dict(zip(shifted.date.unique(), np.linspace(1.0, 1.5, shifted.date.nunique()), strict=True)))
    shifted[["open", "high", "low", "close"]] = shifted[["open", "high", "low", "close"]].mul(bump**3, axis=0)
    again = compute_labels(shifted, LabelSettings(target="market_neutral"))
    finite = lab.label.notna()
    # (1 + r_i) x f_t for a common factor f_t: every name's rank that day, hence its label, is kept.
    pd.testing.assert_series_equal(again.label[finite], lab.label[finite])
    # No forward return, or too few names that day: no label.
    assert lab.label[lab.fwd_return.isna()].isna().all()
    few = compute_labels(prices[prices.ticker < "T02"], LabelSettings(target="market_neutral"))  # 2 names, 3 needed
    assert few.label.isna().all() and few.target_rank.isna().all()


def test_sector_neutral_targets_use_the_sector_mean_and_need_every_sector() -> None:
    prices, sectors = _panel()
    lab = compute_labels(prices, LabelSettings(target="sector_neutral"), sectors=sectors).merge(sectors, on="ticker")
    day = lab[lab.date == lab.date.unique()[3]]
    for _, g in day.groupby("gics_sector"):
        np.testing.assert_allclose(g.excess_return, g.fwd_return - g.fwd_return.mean())
        assert sorted(g.label) == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="GICS sector"):
        compute_labels(prices, LabelSettings(target="sector_neutral"), sectors=sectors.iloc[1:])
    with pytest.raises(ValueError, match="unknown label target"):
        compute_labels(prices, LabelSettings(target="alpha"))


def test_the_default_target_is_market_neutral() -> None:
    prices, _ = _panel()
    pd.testing.assert_frame_equal(compute_labels(prices), compute_labels(prices, LabelSettings(target="market_neutral")))


def test_the_triple_barrier_setting_is_unchanged_and_carries_the_excess_return() -> None:
    prices, _ = _panel()
    lab = compute_labels(prices, LabelSettings(target="triple_barrier"))
    assert set(lab.barrier_day.dropna().unique()) <= set(range(1, 6))
    day = lab[lab.date == lab.date.unique()[10]]
    np.testing.assert_allclose(day.excess_return, day.fwd_return - day.fwd_return.mean())
