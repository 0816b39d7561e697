"""Volatility-scaled triple-barrier labels: down (0) / flat (1) / up (2).

For a row at date t the barriers are +/- ``threshold`` x sigma_t x sqrt(h): sigma_t is the trailing
``vol_window``-day volatility of daily returns known at t, h the horizon. The label is the first
barrier the close crosses on days t+1 ... t+h (up: the upper one, down: the lower one); if neither
is crossed by t+h (the vertical barrier) the label is flat. The h-day forward return is kept beside
it for the information coefficient, and ``barrier_day`` says on which day (1..h) the label was
decided (h for flat). Labels look forward by definition; they are NaN where t+h runs past the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockml_core.settings import LabelSettings

CLASSES = (0, 1, 2)
CLASS_NAMES = ("down", "flat", "up")
MIN_SCALE = 1e-4  # floor of the daily volatility (a flat history would make every move a barrier touch)


def compute_labels(prices: pd.DataFrame, settings: LabelSettings | None = None,
                   holes: pd.DataFrame | None = None) -> pd.DataFrame:
    """One label per (ticker, date), sorted by (ticker, date); see the module docstring.

    ``holes`` (ticker, date): quarantined trading days. A label whose forward path, volatility or
    past return would span one is NaN (the ticker's history is cut there), never bridged.
    """
    from stockml_core.quality import segment_ids

    s = settings or LabelSettings()
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
    return pd.DataFrame({
        "ticker": p.ticker.to_numpy(),
        "date": p.date.to_numpy(),
        "past_return": past_return,
        "fwd_return": fwd_return,
        "vol_scale": scale,
        "label": label,
        "barrier_day": day,
    })
