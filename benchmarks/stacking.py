"""Does the stack earn its place? Meta-learner variants on a finished run's out-of-fold probabilities.

Reads a runtime home after ``stockml run`` (its ``rf_model`` and ``xgb_model`` step outputs, hash-checked,
and the stored training set's keys) and refits the meta-learner the way ``training.stack`` does, nested:
fold k is scored by a meta fit on folds < k only (``models.nested_meta_oof``), so every figure is
out-of-sample on the same rows as the candidate's. Prints each variant's rank IC against the 5-day
forward return, its overlap-corrected t, and the difference from the production stack with the t of
the daily difference.

Read it as a measurement, not a selection: choosing the best of these on the same folds would be tuning
on the test folds. Variants that fit nothing (XGBoost alone, an average) carry no such selection.

    .venv/bin/python benchmarks/stacking.py --home data/runtime
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stockml_core.modeling import models  # noqa: E402
from stockml_core.modeling.evaluation import information_coefficients, overlap_t  # noqa: E402
from stockml_core.modeling.training import fold_of_rows  # noqa: E402
from stockml_core.storage.pickles import PickleStore  # noqa: E402
from stockml_core.storage.warehouse import ASSET_SCHEMA, Warehouse  # noqa: E402

HORIZON = 5


def _nested(Z: np.ndarray, y: np.ndarray, fold_row: np.ndarray, seed: int = 0) -> np.ndarray:
    return models.nested_meta_oof(Z, y, fold_row, seed)


def _demeaned(p: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Each column minus its date's mean (what one day shares by every name: the market's volatility)."""
    frame = pd.DataFrame(p)
    return (frame - frame.groupby(dates).transform("mean")).to_numpy()


def _score(p: np.ndarray) -> np.ndarray:
    return p[:, 2] - p[:, 0]  # up minus down, as evaluation.model_score


def daily_rank_ic(dates: np.ndarray, score: np.ndarray, fwd: np.ndarray) -> pd.Series:
    frame = pd.DataFrame({"date": dates, "s": score, "r": fwd}).dropna()
    return frame.groupby("date").apply(lambda g: g.s.rank().corr(g.r.rank()) if len(g) >= 3 else np.nan, include_groups=False).dropna()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=ROOT / "data" / "runtime")
    args = ap.parse_args()
    wh = Warehouse(args.home / "warehouse.duckdb", read_only=True)
    store = PickleStore(args.home / "dagster_storage", wh)
    rf, xgb = store.load("rf_model"), store.load("xgb_model")
    keys = wh.read(f'select date, regime, label, fwd_return from "{ASSET_SCHEMA}"."training_set"')
    n = len(keys)
    assert len(rf.oof) == n == len(xgb.oof), (len(rf.oof), n)
    fold_row = fold_of_rows(n, rf.folds)
    y, dates, fwd = keys.label.to_numpy(), pd.to_datetime(keys.date).to_numpy(), keys.fwd_return.to_numpy()
    rfp, xgp = np.nan_to_num(rf.oof), np.nan_to_num(xgb.oof)
    onehot = models.meta_inputs(rfp, xgp, keys.regime)[:, 6:]
    eps = 1e-6
    variants = {
        "production stack (LR on both models' probabilities + regime)": lambda: _nested(models.meta_inputs(rfp, xgp, keys.regime), y, fold_row),
        "LR without the regime": lambda: _nested(np.hstack([rfp, xgp]), y, fold_row),
        "LR on log-probabilities + regime": lambda: _nested(np.hstack([np.log(rfp + eps), np.log(xgp + eps), onehot]), y, fold_row),
        "LR on XGBoost alone + regime": lambda: _nested(np.hstack([xgp, onehot]), y, fold_row),
        "LR on date-demeaned probabilities + regime": lambda: _nested(np.hstack([_demeaned(rfp, dates), _demeaned(xgp, dates), onehot]), y, fold_row),
        "XGBoost alone (nothing fitted)": lambda: xgp,
        "RandomForest alone (nothing fitted)": lambda: rfp,
        "average of both (nothing fitted)": lambda: (rfp + xgp) / 2,
    }
    ev = fold_row >= 1  # the rows where the meta-learner is out-of-sample: the candidate's evaluation rows
    base = None
    rows = []
    for name, make in variants.items():
        p = make()
        s = _score(p)[ev]
        ic = information_coefficients(pd.Series(dates[ev]), s, fwd[ev], HORIZON)
        daily = daily_rank_ic(dates[ev], s, fwd[ev])
        if base is None:
            base = daily
        diff = (daily - base).dropna()
        rows.append(
            {
                "variant": name,
                "rank_ic": ic["rank_ic"],
                "rank_ic_t": ic["rank_ic_t"],
                "days": int(ic["days"]),
                "vs production": float(diff.mean()),
                "t of the difference": float(overlap_t(diff.to_numpy(), HORIZON)) if len(diff) > 10 else np.nan,
            }
        )
    print(f"{args.home}: {int(ev.sum()):,} out-of-sample rows on {len(np.unique(dates[ev])):,} days, {len(rf.folds)} folds")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
