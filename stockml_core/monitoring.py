"""Error replay buffer and accuracy by sector, symbol and regime."""

from __future__ import annotations

import pandas as pd

from stockml_core.evaluation import PROBA_COLUMNS

REPLAY_COLUMNS = ["ticker", "date", "regime", "sector", "label", "predicted", "confidence",
                  "error_score", "replay_count"]


def worst_mistakes(oof: pd.DataFrame, previous: pd.DataFrame | None, size: int) -> pd.DataFrame:
    """The ``size`` most confident wrong out-of-sample predictions of the candidate.

    Error score = the confidence of the wrong prediction. A sample already in the previous buffer
    keeps counting its replays; one the candidate now gets right leaves the buffer.
    """
    proba = oof[[f"candidate__{c}" for c in PROBA_COLUMNS]].to_numpy()
    pred = proba.argmax(axis=1)
    wrong = pred != oof.label.to_numpy().astype(int)
    buf = oof.loc[wrong, ["ticker", "date", "regime", "sector", "label"]].copy()
    buf["predicted"] = pred[wrong]
    buf["confidence"] = proba[wrong].max(axis=1)
    buf["error_score"] = buf.confidence
    buf = buf.nlargest(size, "error_score")
    buf["replay_count"] = 0
    if previous is not None and len(previous):
        prev = previous[["ticker", "date", "replay_count"]].rename(columns={"replay_count": "prev"})
        buf = buf.merge(prev, on=["ticker", "date"], how="left")
        buf["replay_count"] = buf.prev.fillna(-1).astype(int) + 1
        buf = buf.drop(columns="prev")
    buf["label"] = buf.label.astype(int)
    return buf[REPLAY_COLUMNS].reset_index(drop=True)


def repeat_error_rate(previous: pd.DataFrame | None, current: pd.DataFrame) -> float:
    """Share of the previous buffer's samples that the new candidate still gets wrong."""
    if previous is None or not len(previous):
        return float("nan")
    prev = previous[["ticker", "date"]].assign(date=lambda d: pd.to_datetime(d.date))
    cur = current[["ticker", "date"]].assign(date=lambda d: pd.to_datetime(d.date), still_wrong=True)
    return float(prev.merge(cur, on=["ticker", "date"], how="left").still_wrong.fillna(False).mean())


def sector_performance(oof: pd.DataFrame) -> pd.DataFrame:
    """Candidate accuracy and counts by sector x regime, by sector, and by symbol."""
    correct = oof[[f"candidate__{c}" for c in PROBA_COLUMNS]].to_numpy().argmax(axis=1) == oof.label.to_numpy().astype(int)
    df = oof.assign(correct=correct)
    frames = []
    for scope, keys in [("sector_regime", ["sector", "regime"]), ("sector", ["sector"]), ("symbol", ["ticker"])]:
        g = df.groupby(keys).correct.agg(["mean", "size"]).reset_index()
        g["scope"] = scope
        g["sector"] = g["sector"] if "sector" in g else df.groupby("ticker").sector.first().reindex(g.ticker).to_numpy()
        g["regime"] = g["regime"] if "regime" in g else "all"
        g["ticker"] = g["ticker"] if "ticker" in g else "all"
        frames.append(g.rename(columns={"mean": "accuracy", "size": "n"}))
    out = pd.concat(frames, ignore_index=True)[["scope", "sector", "regime", "ticker", "accuracy", "n"]]
    out["n"] = out.n.astype("int64")
    return out
