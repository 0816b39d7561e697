"""Purged, embargoed walk-forward splits over trading days."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: row positions to train on and to test on."""

    fold: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    train_end: pd.Timestamp | None  # the last training date (after purge and embargo)


def purged_walk_forward(
    dates: pd.Series | np.ndarray,
    test_start: pd.Timestamp,
    n_folds: int,
    horizon: int,
    embargo: int | None = None,
    train_window: int | None = None,
) -> list[Fold]:
    """Split rows into ``n_folds`` consecutive test blocks from ``test_start`` to the last date.

    Each fold trains only on rows dated before its test block, and drops (purges) every training
    row whose label window (t, t + horizon] reaches into the test block, plus an embargo gap of
    ``embargo`` trading days (default horizon + 1). ``train_window`` (trading days) makes the
    training window slide instead of expand. Trading days are the distinct dates of ``dates``.
    """
    embargo = horizon + 1 if embargo is None else embargo
    if embargo < horizon + 1:
        raise ValueError(f"embargo {embargo} < horizon + 1 = {horizon + 1}: labels would leak")
    d = pd.to_datetime(pd.Series(dates)).to_numpy()
    calendar = np.unique(d)
    pos = np.searchsorted(calendar, d)
    test_days = np.flatnonzero(calendar >= np.datetime64(test_start))
    if len(test_days) < n_folds:
        raise ValueError(f"only {len(test_days)} test days after {test_start}; need >= {n_folds}")
    folds = []
    for k, block in enumerate(np.array_split(test_days, n_folds)):
        a, b = block[0], block[-1]
        # purge: label end pos + horizon < a; embargo: a gap of `embargo` days before the test block
        train_mask = (pos + horizon < a) & (pos < a - embargo)
        if train_window is not None:
            train_mask &= pos >= a - embargo - train_window
        test_mask = (pos >= a) & (pos <= b)
        train_idx = np.flatnonzero(train_mask)
        folds.append(
            Fold(
                fold=k,
                train_idx=train_idx,
                test_idx=np.flatnonzero(test_mask),
                test_start=pd.Timestamp(calendar[a]),
                test_end=pd.Timestamp(calendar[b]),
                train_end=pd.Timestamp(d[train_idx].max()) if len(train_idx) else None,
            )
        )
    return folds
