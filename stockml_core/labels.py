"""Forward-horizon, volatility-scaled labels: down (0) / flat (1) / up (2)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockml_core.settings import LabelSettings

CLASSES = (0, 1, 2)
CLASS_NAMES = ("down", "flat", "up")


def compute_labels(prices: pd.DataFrame, settings: LabelSettings | None = None) -> pd.DataFrame:
    """One label per (ticker, date): the sign of the h-day forward return beyond +/- k sigma.

    sigma is the trailing ``vol_window``-day volatility known at t, scaled by sqrt(h); the label
    looks forward by definition and is NaN where the horizon runs past the data.
    """
    s = settings or LabelSettings()
    p = prices.sort_values(["ticker", "date"]).reset_index(drop=True)
    close = p.close.to_numpy(dtype="float64")
    by = p.groupby("ticker", sort=False).close
    fwd_close = by.shift(-s.horizon).to_numpy(dtype="float64")
    fwd_return = fwd_close / close - 1.0
    daily = by.pct_change()
    vol = daily.groupby(p.ticker, sort=False).rolling(s.vol_window, min_periods=s.vol_window).std()
    vol = vol.reset_index(level=0, drop=True).sort_index().to_numpy()
    scale = np.maximum(vol, 1e-4) * np.sqrt(s.horizon)
    z = fwd_return / scale
    label = np.where(z > s.threshold, 2.0, np.where(z < -s.threshold, 0.0, 1.0))
    label[~np.isfinite(z)] = np.nan
    past_return = close / by.shift(s.horizon).to_numpy(dtype="float64") - 1.0  # known at t
    return pd.DataFrame({
        "ticker": p.ticker.to_numpy(),
        "date": p.date.to_numpy(),
        "past_return": past_return,
        "fwd_return": fwd_return,
        "vol_scale": scale,
        "label": label,
    })
