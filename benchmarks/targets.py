"""Targets side by side on the same rows: ``.venv/bin/python benchmarks/targets.py [--warehouse PATH] [--targets ...]``.

Reads the ``training_set`` and ``raw_prices`` a ``stockml run`` stored (default: ``$STOCKML_HOME/warehouse.duckdb``),
recomputes the labels of each target with the production code (``labels.compute_labels`` with
``LabelSettings.target``: ``triple_barrier``, ``market_neutral``, ``sector_neutral``; the quarantine's
holes kept out), relabels the same training rows, and fits the RandomForest and XGBoost on the same
purged walk-forward folds as training does (``training.folds_for``, ``models.out_of_fold``). Per target
and model it prints the out-of-fold accuracy on the target's own classes and the daily rank IC of the
up-minus-down score against the raw 5-day forward return with its t-statistic (``overlap_t``), beside
the logistic momentum baseline refitted on the same target and the ranking baselines (the same for
every target: they fit nothing), with the fits' wall and CPU seconds.

``--learners`` adds models that learn a cross-sectional target other than by classifying its terciles,
on the same folds and rows: ``xgb_regression`` (XGBoost squared error on the day's percentile rank of
the market-neutral return, ``target_rank``), ``xgb_pairwise`` (XGBoost ``rank:pairwise`` with the date as
the query group, on the same rank) and ``rf_regression`` (the forest's regressor on it), each with the
production model settings (rounds, depth, learning rate, bins, rows a tree); the score is the prediction.
"""

import argparse
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stockml_core.features import FEATURE_NAMES  # noqa: E402
from stockml_core.market import quality  # noqa: E402
from stockml_core.modeling import models, training  # noqa: E402
from stockml_core.modeling.evaluation import (  # noqa: E402
    MOMENTUM_BASELINE_FEATURES,
    RANK_BASELINES,
    classification_metrics,
    information_coefficients,
    logistic_momentum_probabilities,
    rank_probabilities,
)
from stockml_core.modeling.labels import TARGETS, compute_labels  # noqa: E402
from stockml_core.settings import Settings  # noqa: E402
from stockml_core.storage.matrix_store import TrainingMatrixStore  # noqa: E402
from stockml_core.storage.warehouse import ASSET_SCHEMA, Warehouse  # noqa: E402


def main() -> int:
    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")  # joblib noise, once per tree
    base = Settings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path, default=base.warehouse_path)
    ap.add_argument("--targets", nargs="*", default=list(TARGETS), choices=TARGETS)
    ap.add_argument("--models", nargs="*", default=["rf", "xgb"])
    ap.add_argument("--learners", nargs="*", default=[], choices=list(LEARNERS))
    a = ap.parse_args()
    wh = Warehouse(a.warehouse)
    ts = TrainingMatrixStore(Settings(home=a.warehouse.parent).training_set_dir, wh).load()  # stored by date, then ticker
    prices = wh.read(f'select * from "{ASSET_SCHEMA}"."raw_prices"')
    universe = wh.read(f'select ticker, gics_sector from "{ASSET_SCHEMA}"."market_universe"')
    holes = quality.QuarantineStore(wh).holes()
    ts["date"] = pd.to_datetime(ts.date).astype("datetime64[ns]")
    prices["date"] = pd.to_datetime(prices.date).astype("datetime64[ns]")
    folds = training.folds_for(ts, base)
    test = training.fold_of_rows(len(ts), folds) >= 0
    X = ts[FEATURE_NAMES].to_numpy(dtype="float32")
    w = ts.weight.to_numpy()
    fwd = ts.fwd_return.to_numpy()
    dates = ts.date.to_numpy()
    h = base.labels.horizon
    print(
        f"training set: {len(ts):,} rows, {ts.ticker.nunique()} names, {ts.date.min():%Y-%m-%d}..{ts.date.max():%Y-%m-%d}; "
        f"{len(folds)} folds, {int(test.sum()):,} out-of-fold rows; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'target':15s} {'model':18s} {'accuracy':>8s} {'rank IC':>8s} {'t':>6s} {'ICIR':>6s} {'wall s':>7s} {'cpu s':>7s}")

    def line(target, name, y, proba, seconds=float("nan"), cpu=float("nan")):
        ok = test & np.isfinite(proba).all(axis=1) & np.isfinite(y)
        acc = classification_metrics(y[ok].astype(int), proba[ok])["accuracy"]
        ic = information_coefficients(dates[ok], proba[ok, 2] - proba[ok, 0], fwd[ok], h)
        print(
            f"{target:15s} {name:18s} {acc:8.4f} {ic['rank_ic']:8.4f} {ic['rank_ic_t']:6.2f} {ic['rank_icir']:6.3f} {seconds:7.1f} {cpu:7.1f}",
            flush=True,
        )

    for target in a.targets:
        lab = compute_labels(prices, replace(base.labels, target=target), holes, universe)
        y = ts[["ticker", "date"]].merge(lab[["ticker", "date", "label"]], on=["ticker", "date"], how="left").label.to_numpy()
        if np.isnan(y).any():  # a row the target cannot label (too few names that day): left out of every fit and score
            print(f"{target}: {int(np.isnan(y).sum()):,} training rows without a label")
        labelled = np.isfinite(y)
        yy = np.where(labelled, y, 1).astype(int)
        ww = np.where(labelled, w, 0.0)
        for kind in a.models:
            c0, t0 = os.times(), time.perf_counter()
            oof = models.out_of_fold(kind, X, yy, ww, folds, base.training)
            c1 = os.times()
            line(target, kind, y, oof, time.perf_counter() - t0, (c1.user - c0.user) + (c1.system - c0.system))
        momentum = ts[list(MOMENTUM_BASELINE_FEATURES)].to_numpy(dtype="float64")
        proba = np.full((len(ts), 3), np.nan)
        for f in folds:
            tr = f.train_idx[labelled[f.train_idx]]
            proba[f.test_idx] = logistic_momentum_probabilities(momentum[tr], yy[tr], momentum[f.test_idx], base.training.seed)
        line(target, "logistic_momentum", y, proba)
        if target == a.targets[0]:
            for b, (feature, sign) in RANK_BASELINES.items():
                line(target, b, y, rank_probabilities(dates, sign * ts[feature].to_numpy()))
    if a.learners:
        lab = compute_labels(prices, replace(base.labels, target="market_neutral"), holes, universe)
        keyed = ts[["ticker", "date"]].merge(lab[["ticker", "date", "label", "target_rank"]], on=["ticker", "date"], how="left")
        y, rank = keyed.label.to_numpy(), keyed.target_rank.to_numpy()
        for name in a.learners:
            c0, t0 = os.times(), time.perf_counter()
            score = np.full(len(ts), np.nan)
            for f in folds:
                tr = f.train_idx[np.isfinite(rank[f.train_idx])]
                score[f.test_idx] = LEARNERS[name](X[tr], rank[tr], w[tr], dates[tr], X[f.test_idx], base.training)
            c1 = os.times()
            line("market_neutral", name, y, rank_probabilities(dates, score), time.perf_counter() - t0, (c1.user - c0.user) + (c1.system - c0.system))
    return 0


def _xgb_params(t) -> dict:
    return {
        "n_estimators": t.xgb_rounds,
        "max_depth": t.xgb_max_depth,
        "learning_rate": t.xgb_learning_rate,
        "subsample": t.xgb_subsample,
        "colsample_bytree": t.xgb_colsample_bytree,
        "max_bin": t.xgb_max_bin,
        "min_child_weight": 20,
        "tree_method": "hist",
        "n_jobs": t.n_jobs,
        "random_state": t.seed,
    }


def xgb_regression(X, target, w, dates, X_test, t):
    from xgboost import XGBRegressor

    return XGBRegressor(objective="reg:squarederror", **_xgb_params(t)).fit(X, target, sample_weight=w).predict(X_test)


def xgb_pairwise(X, target, w, dates, X_test, t):
    from xgboost import XGBRanker

    order = np.argsort(dates, kind="stable")  # a ranker wants each query's rows together
    _, qid = np.unique(dates[order], return_inverse=True)
    # Relevance grades: the day's percentile rank in 5 bins (0 worst .. 4 best); pairs are formed within a date.
    grade = np.minimum((target[order] * 5).astype(int), 4)
    params = {**_xgb_params(t), "min_child_weight": 1}
    model = XGBRanker(objective="rank:pairwise", **params).fit(X[order], grade, qid=qid)
    return model.predict(X_test)


def rf_regression(X, target, w, dates, X_test, t):
    from sklearn.ensemble import RandomForestRegressor

    per_tree = (
        t.rf_max_samples if t.rf_max_rows_per_tree is None or t.rf_max_samples * len(X) <= t.rf_max_rows_per_tree else int(t.rf_max_rows_per_tree)
    )
    model = RandomForestRegressor(
        n_estimators=t.rf_trees,
        max_depth=t.rf_max_depth,
        min_samples_leaf=t.rf_min_samples_leaf,
        max_features="sqrt",
        max_samples=per_tree,
        n_jobs=t.n_jobs,
        random_state=t.seed,
    )
    return model.fit(X, target, sample_weight=w).predict(X_test)


LEARNERS = {"xgb_regression": xgb_regression, "xgb_pairwise": xgb_pairwise, "rf_regression": rf_regression}


if __name__ == "__main__":
    sys.exit(main())
