"""Volatility-scaled triple-barrier labels: down (0) / flat (1) / up (2).

For a row at date t the barriers are +/- ``threshold`` x sigma_t x sqrt(h): sigma_t is the trailing
``vol_window``-day volatility of daily returns known at t, h the horizon. The label is the first
barrier the close crosses on days t+1 ... t+h (up: the upper one, down: the lower one); if neither
is crossed by t+h (the vertical barrier) the label is flat. The h-day forward return is kept beside
it for the information coefficient, and ``barrier_day`` says on which day (1..h) the label was
decided (h for flat). Labels look forward by definition; they are NaN where t+h runs past the data.

Cross-sectional targets (``LabelSettings.target``): ``excess_return`` is the forward return minus
the day's cross-sectional mean (``market_neutral``) or the mean of the ticker's GICS sector that day
(``sector_neutral``); the class is its per-date tercile (down / flat / up relative to peers that
day, about a third each by construction) and ``target_rank`` its per-date percentile rank in (0, 1].
A day (or a sector-day) with fewer than ``min_names`` forward returns has no cross-sectional label.
The common move of the market, which no model forecasts well, is gone from what the models learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockml_core.settings import LabelSettings

CLASSES = (0, 1, 2)
CLASS_NAMES = ("down", "flat", "up")
TARGETS = ("triple_barrier", "market_neutral", "sector_neutral")
MIN_SCALE = 1e-4  # floor of the daily volatility (a flat history would make every move a barrier touch)


def compute_labels(
    prices: pd.DataFrame, settings: LabelSettings | None = None, holes: pd.DataFrame | None = None, sectors: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One label per (ticker, date), sorted by (ticker, date); see the module docstring.

    ``holes`` (ticker, date): quarantined trading days. A label whose forward path, volatility or
    past return would span one is NaN (the ticker's history is cut there), never bridged.
    ``sectors`` (ticker, gics_sector): needed by the ``sector_neutral`` target (or a ``gics_sector``
    column in ``prices``).
    """
    from stockml_core.market.quality import segment_ids

    s = settings or LabelSettings()
    if s.target not in TARGETS:
        raise ValueError(f"unknown label target {s.target!r}; choose one of {TARGETS} (LabelSettings.target)")
    p = prices.sort_values(["ticker", "date"]).reset_index(drop=True)
    close = p.close.to_numpy(dtype="float64")
    segment = segment_ids(p, holes)
    by = p.groupby(segment, sort=False).close
    # Forward path: the return from t to t+j for j = 1..h, one column each (NaN past the data).
    path = np.column_stack([by.shift(-j).to_numpy(dtype="float64") / close - 1.0 for j in range(1, s.horizon + 1)])
    fwd_return = path[:, -1]
    daily = by.pct_change()
    vol = daily.groupby(segment, sort=False).rolling(s.vol_window, min_periods=s.vol_window).std()
    vol = vol.reset_index(level=0, drop=True).sort_index().to_numpy()
    scale = np.maximum(vol, MIN_SCALE) * np.sqrt(s.horizon)
    barrier = s.threshold * scale
    never = s.horizon + 1
    with np.errstate(invalid="ignore"):
        up_hit = path >= barrier[:, None]
        down_hit = path <= -barrier[:, None]
    first_up = np.where(up_hit.any(axis=1), up_hit.argmax(axis=1) + 1, never)
    first_down = np.where(down_hit.any(axis=1), down_hit.argmax(axis=1) + 1, never)
    label = np.where(first_up < first_down, 2.0, np.where(first_down < first_up, 0.0, 1.0))
    day = np.minimum(np.minimum(first_up, first_down), s.horizon).astype("float64")
    undefined = ~(np.isfinite(path).all(axis=1) & np.isfinite(barrier))
    label[undefined] = np.nan
    day[undefined] = np.nan
    past_return = close / by.shift(s.horizon).to_numpy(dtype="float64") - 1.0  # known at t
    group = p.date.to_numpy()
    if s.target == "sector_neutral":
        sector = (
            p["gics_sector"]
            if "gics_sector" in p.columns
            else p.ticker.map(None if sectors is None else sectors.drop_duplicates("ticker").set_index("ticker").gics_sector)
        )
        if sector.isna().any():
            raise ValueError(
                f"sector_neutral labels need a GICS sector for every ticker; missing for {sorted(p.ticker[sector.isna()].unique())[:10]}"
            )
        group = [group, sector.to_numpy()]
    excess, rank = cross_sectional(fwd_return, group, s.min_names)
    if s.target != "triple_barrier":
        label = np.minimum(np.floor(rank * 3.0 - 1e-9), 2.0)  # terciles of (0, 1]: (0, 1/3] down, ..., (2/3, 1] up
        day = np.where(np.isfinite(label), float(s.horizon), np.nan)
    return pd.DataFrame(
        {
            "ticker": p.ticker.to_numpy(),
            "date": p.date.to_numpy(),
            "past_return": past_return,
            "fwd_return": fwd_return,
            "excess_return": excess,
            "target_rank": rank,
            "vol_scale": scale,
            "label": label,
            "barrier_day": day,
        }
    )


def cross_sectional(values: np.ndarray, by, min_names: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group (a date, or date and sector): ``values`` minus the group mean, and their percentile rank
    in (0, 1] (average ranks for ties). NaN values, and groups with fewer than ``min_names`` finite
    values, give NaN."""
    v = pd.Series(values, dtype="float64")
    g = v.groupby(by if not isinstance(by, list) else [pd.Series(b) for b in by], sort=False)
    n = g.transform("count").to_numpy()
    ok = np.isfinite(v.to_numpy()) & (n >= min_names)
    excess = np.where(ok, v.to_numpy() - g.transform("mean").to_numpy(), np.nan)
    rank = np.where(ok, g.rank(method="average").to_numpy() / np.maximum(n, 1), np.nan)
    return excess, rank
