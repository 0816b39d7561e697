"""Walk-forward trading of out-of-sample signals with costs, against buy-and-hold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stockml_core.modeling.evaluation import model_score, models_in

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
    out = pd.DataFrame(
        {"date": wide.index, "strategy_return": strategy.to_numpy(), "buy_and_hold_return": hold.to_numpy(), "turnover": turnover.to_numpy()}
    )
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
        "annual_return": ann,
        "annual_volatility": vol,
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


def decile_book(signals: pd.DataFrame, returns: pd.DataFrame, horizon: int, quantile: float = 0.1, cost_bps: float = 5.0) -> pd.DataFrame:
    """A long top-``quantile`` / short bottom-``quantile`` book held ``horizon`` days, net of costs.

    Each day t the names with a score (known at the close of t) are ranked; the top and bottom
    ``quantile`` (at least one name each; tied names at the edge all in) share weights of +1 and -1 in
    that day's sub-book, held
    for ``horizon`` days; the book is the average of the last ``horizon`` sub-books (Jegadeesh-Titman
    overlapping portfolios: the holding period matches the target's horizon, and a day's turnover is
    about 2 / horizon of a daily rebalance's). A name's position earns its t -> t+1 return
    (``returns``: ticker, date, next_return; a missing return earns 0 and is not traded into).
    Costs: ``cost_bps`` per side on the day's turnover (sum of |weight change|).
    Returns one row per date: gross and net return, turnover, long and short names, net equity.
    """
    df = signals.merge(returns, on=["ticker", "date"], how="left").dropna(subset=["score"])
    if df.empty:
        return pd.DataFrame(columns=["date", "gross_return", "net_return", "turnover", "names", "net_equity"])
    g = df.groupby("date").score
    n = g.transform("size").to_numpy()
    k = np.maximum(np.floor(n * quantile), 1.0)
    # Ties are never broken by row order (that would trade the alphabet): a name is in the top when fewer
    # than k names score strictly higher, so tied names at the edge go in together. A constant score
    # (majority, always-up) puts every name in both legs: weight 0, no book; a two-valued one is long one
    # value and short the other.
    top = g.rank(ascending=False, method="min").to_numpy() <= k
    bottom = g.rank(ascending=True, method="min").to_numpy() <= k
    day = df.date.to_numpy()
    n_top = pd.Series(top).groupby(day).transform("sum").to_numpy()
    n_bottom = pd.Series(bottom).groupby(day).transform("sum").to_numpy()
    df = df.assign(weight=np.where(top, 1.0 / np.maximum(n_top, 1), 0.0) - np.where(bottom, 1.0 / np.maximum(n_bottom, 1), 0.0))
    books = df.pivot_table(index="date", columns="ticker", values="weight", fill_value=0.0, sort=True)
    weights = books.rolling(horizon, min_periods=1).sum() / horizon  # the last h sub-books, each 1/h of the capital
    rets = df.pivot_table(index="date", columns="ticker", values="next_return", sort=True).reindex_like(weights)
    gross = (weights * rets.fillna(0.0)).sum(axis=1)
    turnover = weights.diff().abs().sum(axis=1)
    turnover.iloc[0] = weights.iloc[0].abs().sum()
    net = gross - turnover * cost_bps / 1e4
    out = pd.DataFrame(
        {
            "date": weights.index,
            "gross_return": gross.to_numpy(),
            "net_return": net.to_numpy(),
            "turnover": turnover.to_numpy(),
            "names": (books != 0).sum(axis=1).to_numpy(),
        }
    )
    out["net_equity"] = (1 + out.net_return).cumprod()
    return out.reset_index(drop=True)


def book_summary(curve: pd.DataFrame) -> dict[str, float]:
    """Gross and net annual return and Sharpe, max drawdown (net) and average daily turnover of a book."""
    gross, net = performance(curve.gross_return), performance(curve.net_return)
    return {
        "gross_annual_return": gross["annual_return"],
        "gross_sharpe": gross["sharpe"],
        "net_annual_return": net["annual_return"],
        "net_sharpe": net["sharpe"],
        "net_max_drawdown": net["max_drawdown"],
        "avg_daily_turnover": float(curve.turnover.mean()) if len(curve) else float("nan"),
    }


def decile_books(
    evaluation: pd.DataFrame, returns: pd.DataFrame, models: list[str], horizon: int, cost_bps: float
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Each model's long top / short bottom decile book (``decile_book``) on the evaluation rows, scored by
    its up-minus-down probability (``<model>__p_up`` - ``<model>__p_down``), and one summary row per model
    (``book_summary``); models without columns are skipped."""
    books, table = {}, []
    present = models_in(evaluation)
    for model in [m for m in models if m in present]:
        sig = evaluation[["date", "ticker"]].assign(score=model_score(evaluation, model))
        books[model] = decile_book(sig, returns, horizon, 0.1, cost_bps)
        table.append({"model": model, **book_summary(books[model])})
    return books, pd.DataFrame(table)
