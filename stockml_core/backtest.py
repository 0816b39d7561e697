"""Walk-forward trading of out-of-sample signals with costs, against buy-and-hold."""

from __future__ import annotations

import numpy as np
import pandas as pd

TRADING_DAYS = 252


def next_day_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Close-to-close return from t to t+1 per (ticker, date): what a position taken at t earns."""
    p = prices.sort_values(["ticker", "date"])
    nxt = p.groupby("ticker").close.shift(-1) / p.close - 1.0
    return pd.DataFrame({"ticker": p.ticker.to_numpy(), "date": p.date.to_numpy(), "next_return": nxt.to_numpy()})


def run_backtest(signals: pd.DataFrame, returns: pd.DataFrame, top_k: int, cost_bps: float) -> pd.DataFrame:
    """Daily long top-k / short bottom-k by score, equal weights, costs per side on turnover.

    ``signals``: date, ticker, score (known at the close of t). Positions earn t -> t+1 returns.
    Returns one row per date: strategy and buy-and-hold daily returns, turnover and equity.
    """
    df = signals.merge(returns, on=["ticker", "date"], how="inner").dropna(subset=["score", "next_return"])
    n = df.groupby("date").ticker.transform("size")
    k = np.minimum(top_k, n // 2)
    rank_desc = df.groupby("date").score.rank(ascending=False, method="first")
    rank_asc = df.groupby("date").score.rank(ascending=True, method="first")
    w = np.where(rank_desc <= k, 1.0, 0.0) / np.maximum(k, 1) - np.where(rank_asc <= k, 1.0, 0.0) / np.maximum(k, 1)
    df = df.assign(weight=w)
    wide = df.pivot_table(index="date", columns="ticker", values="weight", fill_value=0.0)
    rets = df.pivot_table(index="date", columns="ticker", values="next_return")
    turnover = wide.diff().abs().sum(axis=1)
    turnover.iloc[0] = wide.iloc[0].abs().sum()
    gross = (wide * rets.fillna(0.0)).sum(axis=1)
    strategy = gross - turnover * cost_bps / 1e4
    hold = rets.mean(axis=1)
    out = pd.DataFrame({"date": wide.index, "strategy_return": strategy.to_numpy(),
                        "buy_and_hold_return": hold.to_numpy(), "turnover": turnover.to_numpy()})
    out["strategy_equity"] = (1 + out.strategy_return).cumprod()
    out["buy_and_hold_equity"] = (1 + out.buy_and_hold_return).cumprod()
    return out.reset_index(drop=True)


def performance(returns: pd.Series) -> dict[str, float]:
    """Annualized return and volatility, Sharpe, max drawdown of a daily return series."""
    r = returns.dropna()
    if r.empty:
        return {"annual_return": np.nan, "annual_volatility": np.nan, "sharpe": np.nan, "max_drawdown": np.nan}
    equity = (1 + r).cumprod()
    years = len(r) / TRADING_DAYS
    vol = float(r.std() * np.sqrt(TRADING_DAYS))
    ann = float(equity.iloc[-1] ** (1 / years) - 1) if years > 0 else np.nan
    return {
        "annual_return": ann, "annual_volatility": vol,
        "sharpe": float(r.mean() * TRADING_DAYS / vol) if vol > 0 else np.nan,
        "max_drawdown": float((equity / equity.cummax() - 1).min()),
    }


def summarize_backtest(curve: pd.DataFrame) -> pd.DataFrame:
    """Strategy vs buy-and-hold performance, one row each."""
    rows = []
    for name, col in [("long_short_top_k", "strategy_return"), ("buy_and_hold", "buy_and_hold_return")]:
        perf = performance(curve[col])
        perf["avg_daily_turnover"] = float(curve.turnover.mean()) if name != "buy_and_hold" else 0.0
        rows.append({"portfolio": name, **perf})
    return pd.DataFrame(rows)
