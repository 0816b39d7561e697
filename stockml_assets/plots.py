"""Matplotlib figures for asset metadata (headless backend)."""

import pandas as pd


def _pyplot():
    """matplotlib's pyplot on the headless backend, imported when a plot is drawn (not when the definitions load)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_plot(labels, values, xlabel: str):
    fig, ax = _pyplot().subplots(figsize=(7, 4))
    ax.barh(list(labels), list(values), color="#2f6db5")
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    return fig


def equity_plot(curve: pd.DataFrame):
    fig, ax = _pyplot().subplots(figsize=(8, 4))
    ax.plot(curve.date, curve.strategy_equity, label="long/short top-k (after costs)")
    ax.plot(curve.date, curve.buy_and_hold_equity, label="buy-and-hold (equal weight)")
    ax.set_ylabel("equity (start = 1)")
    ax.legend()
    fig.tight_layout()
    return fig


def book_plot(books: dict, names: list[str], version: str):
    """Net equity of the decile books of ``names`` (candidate first), titled with the model version."""
    fig, ax = _pyplot().subplots(figsize=(8, 4))
    for name in names:
        b = books[name]
        ax.plot(b.date, b.net_equity, label=f"{name} (net of costs)")
    ax.set_ylabel("equity (start = 1)")
    ax.set_title(f"{version}: long top / short bottom decile, out-of-sample")
    ax.legend()
    fig.tight_layout()
    return fig


def mix_plot(table: pd.DataFrame, title: str):
    fig, ax = _pyplot().subplots(figsize=(6, 3))
    x = range(len(table))
    ax.bar([i - 0.2 for i in x], table.reference_share, width=0.4, label="reference")
    ax.bar([i + 0.2 for i in x], table.current_share, width=0.4, label="current")
    ax.set_xticks(list(x), table.category)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
