"""Error analysis: the error replay buffer (the worst confident mistakes, replayed into training) and accuracy by sector, symbol and regime."""

from __future__ import annotations

import pandas as pd

from stockml_core.modeling.evaluation import model_probabilities
from stockml_core.schemas import ErrorReplayBufferSchema, columns

REPLAY_COLUMNS = columns(ErrorReplayBufferSchema)


def worst_mistakes(oof: pd.DataFrame, previous: pd.DataFrame | None, size: int) -> pd.DataFrame:
    """The ``size`` most confident wrong out-of-sample predictions of the candidate.

    Error score = the confidence of the wrong prediction. A sample already in the previous buffer
    keeps counting its replays; one the candidate now gets right leaves the buffer.
    """
    proba = model_probabilities(oof, "candidate")
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


def update_replay_buffer(oof: pd.DataFrame, previous: pd.DataFrame | None, size: int, promoted: bool) -> pd.DataFrame:
    """The next buffer: the candidate's worst mistakes; a sample leaves only once a promoted model gets it right.

    With a promoted candidate the buffer is its ``worst_mistakes``. A rejected candidate proves
    nothing about the champion, so the previous samples it did not keep stay (worst first, capped).
    """
    new = worst_mistakes(oof, previous, size)
    if promoted or previous is None or not len(previous):
        return new
    prev = previous[REPLAY_COLUMNS].assign(date=lambda d: pd.to_datetime(d.date))
    key = ["ticker", "date"]
    stay = prev.merge(new[key], on=key, how="left", indicator=True)
    stay = stay[stay.pop("_merge") == "left_only"]
    out = pd.concat([new, stay], ignore_index=True).nlargest(size, "error_score")
    return out[REPLAY_COLUMNS].reset_index(drop=True)


def replay_error_rates(oof: pd.DataFrame) -> dict[str, float]:
    """Repeat-error rate of the replayed samples (``source == "replay"``) that fall in the evaluation.

    Before replay it is 1.0 by construction (each was a confident mistake); after, the share the
    candidate still gets wrong out-of-sample. NaN without replayed samples in the evaluation.
    """
    rows = oof[oof["source"] == "replay"] if "source" in oof.columns else oof.iloc[:0]
    if not len(rows):
        return {"replayed_evaluated": 0.0, "repeat_error_before": float("nan"), "repeat_error_after": float("nan")}
    pred = model_probabilities(rows, "candidate").argmax(axis=1)
    return {
        "replayed_evaluated": float(len(rows)),
        "repeat_error_before": 1.0,
        "repeat_error_after": float((pred != rows.label.to_numpy().astype(int)).mean()),
    }


def sector_performance(oof: pd.DataFrame) -> pd.DataFrame:
    """Candidate accuracy and counts by sector x regime, by sector, and by symbol."""
    correct = model_probabilities(oof, "candidate").argmax(axis=1) == oof.label.to_numpy().astype(int)
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
