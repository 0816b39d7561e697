"""Market regimes per date from VIX and S&P 500 drawdown, using data up to each date only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockml_core.settings import RegimeSettings

REGIMES = ("crash", "high_volatility", "recovery", "normal")


def compute_regimes(market: pd.DataFrame, settings: RegimeSettings | None = None) -> pd.DataFrame:
    """Label every market date crash / high_volatility / recovery / normal.

    The drawdown is measured from the running (expanding) peak, so the regime at t never uses a
    later price. Precedence: crash > high_volatility > recovery > normal.
    """
    s = settings or RegimeSettings()
    m = market.sort_values("date")
    spx = m.spx_close.to_numpy(dtype="float64")
    vix = m.vix_close.to_numpy(dtype="float64")
    drawdown = spx / np.maximum.accumulate(spx) - 1.0
    ret_20d = pd.Series(spx).pct_change(20).fillna(0.0).to_numpy()
    crash = (vix >= s.crash_vix) | ((drawdown <= s.crash_drawdown) & (ret_20d <= s.crash_return_20d))
    high_vol = vix >= s.high_vol_vix
    recovery = (drawdown <= s.recovery_drawdown) & (ret_20d > s.recovery_return_20d)
    regime = np.select([crash, high_vol, recovery], list(REGIMES[:3]), default="normal")
    return pd.DataFrame(
        {
            "date": m.date.to_numpy(),
            "regime": regime,
            "vix_close": vix,
            "spx_drawdown": drawdown,
            "spx_return_20d": ret_20d,
        }
    )
