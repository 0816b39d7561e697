"""RandomForest, XGBoost and the stacking meta-learner on their out-of-fold probabilities."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stockml_core.market.regimes import REGIMES
from stockml_core.modeling.labels import CLASSES
from stockml_core.modeling.splits import Fold
from stockml_core.settings import TrainingSettings
from stockml_core.storage.matrix_store import feature_array, rows_of

if TYPE_CHECKING:  # imported where a model is fitted: scikit-learn and XGBoost take 2 s to import, and
    # `stockml status`, the sensors and every Dagster process that loads the definitions need neither
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from xgboost import XGBClassifier


def _check_classes(y: np.ndarray, what: str) -> None:
    missing = sorted(set(CLASSES) - set(np.unique(y).astype(int)))
    if missing:
        raise ValueError(
            f"{what}: training rows lack classes {missing}; widen the training window "
            "(TrainingSettings.recent_years, or fewer folds: n_folds, via STOCKML_TRAINING)"
        )


def fit_random_forest(X: np.ndarray, y: np.ndarray, w: np.ndarray, s: TrainingSettings) -> RandomForestClassifier:
    """A depth-bounded RandomForest (bounded so that its TreeSHAP stays cheap)."""
    _check_classes(y, "rf_model")
    per_tree = (
        s.rf_max_samples if s.rf_max_rows_per_tree is None or s.rf_max_samples * len(X) <= s.rf_max_rows_per_tree else int(s.rf_max_rows_per_tree)
    )
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(
        n_estimators=s.rf_trees,
        max_depth=s.rf_max_depth,
        min_samples_leaf=s.rf_min_samples_leaf,
        max_features="sqrt",
        max_samples=per_tree,
        n_jobs=s.n_jobs,
        random_state=s.seed,
    )
    model.fit(X, y.astype(int), sample_weight=w)
    # Predict on one thread: with several, the trees' probabilities are summed in the order the threads
    # finish, so the last bits differ from run to run (1e-13), the meta-learner fitted on them differs in its
    # last bits too, and the same data and seed gave a different artefact hash every run.
    model.n_jobs = 1
    return model


def fit_xgboost(X: np.ndarray, y: np.ndarray, w: np.ndarray, s: TrainingSettings) -> XGBClassifier:
    """A histogram XGBoost softmax classifier, on at most ``xgb_max_rows`` rows (a seeded sample).

    A sample is streamed into XGBoost's quantized matrix in blocks of ``XGB_SAMPLE_BLOCK`` rows
    (``xgboost.DataIter``) instead of copied out whole: at the 1M-row cap a copy is 0.9 GB of float32
    beside the memory-mapped set. Within one block this is the fit on the copied sample bit for bit
    (tested); over several, XGBoost merges the blocks' quantile sketches, so the bin edges may differ
    in the last places.
    """
    _check_classes(y, "xgb_model")
    from xgboost import XGBClassifier

    model = XGBClassifier(
        n_estimators=s.xgb_rounds,
        max_depth=s.xgb_max_depth,
        learning_rate=s.xgb_learning_rate,
        subsample=s.xgb_subsample,
        colsample_bytree=s.xgb_colsample_bytree,
        max_bin=s.xgb_max_bin,
        min_child_weight=20,
        tree_method="hist",
        objective="multi:softprob",
        n_jobs=s.n_jobs,
        random_state=s.seed,
    )
    if s.xgb_max_rows is None or len(X) <= s.xgb_max_rows:
        return model.fit(X, y.astype(int), sample_weight=w)
    keep = np.sort(np.random.default_rng(s.seed).choice(len(X), int(s.xgb_max_rows), replace=False))
    _check_classes(y[keep], "xgb_model")
    return _fit_streamed(model, X, y, w, keep)


XGB_SAMPLE_BLOCK = 131_072  # rows per block of a streamed sample: 122 MB of float32 at 233 features


def _fit_streamed(model: XGBClassifier, X: np.ndarray, y: np.ndarray, w: np.ndarray, keep: np.ndarray) -> XGBClassifier:
    """``model`` fitted on the rows ``keep`` of ``X``, fed to XGBoost one block of rows at a time."""
    import xgboost as xgb

    class Blocks(xgb.DataIter):
        def __init__(self) -> None:
            self.at = 0
            super().__init__(release_data=True)

        def next(self, input_data) -> bool:
            if self.at >= len(keep):
                return False
            rows = keep[self.at : self.at + XGB_SAMPLE_BLOCK]
            self.at += XGB_SAMPLE_BLOCK
            input_data(data=np.ascontiguousarray(X[rows]), label=y[rows].astype(int), weight=w[rows])
            return True

        def reset(self) -> None:
            self.at = 0

    params = model.get_xgb_params()
    params["num_class"] = len(CLASSES)
    dtrain = xgb.QuantileDMatrix(Blocks(), max_bin=model.max_bin, nthread=model.n_jobs)
    booster = xgb.train(params, dtrain, num_boost_round=model.get_num_boosting_rounds())
    del dtrain
    # The sklearn wrapper the rest of the platform holds, by XGBoost's public load route.
    model.load_model(bytearray(booster.save_raw("ubj")))
    return model


FITTERS = {"rf": fit_random_forest, "xgb": fit_xgboost}


class FitProgress:
    """One line per finished fit of a model: rows, elapsed time and an estimate of the time left.

    The estimate assumes fit time proportional to training rows (trees: close to it).
    """

    def __init__(self, kind: str, rows_per_fit: list[int], sink: Callable[[str], None] | None) -> None:
        self.kind, self.rows, self.sink = kind, rows_per_fit, sink
        self.started = time.perf_counter()

    def done(self, i: int, rows: int) -> None:
        if self.sink is None:
            return
        elapsed = time.perf_counter() - self.started
        fitted = sum(self.rows[: i + 1])
        left = elapsed / max(fitted, 1) * sum(self.rows[i + 1 :])
        what = f"fold {i + 1}/{len(self.rows) - 1}" if i < len(self.rows) - 1 else "final fit"
        self.sink(f"{self.kind} {what}: {rows:,} training rows, {elapsed:.0f} s elapsed, ~{left:.0f} s left")


def out_of_fold(
    kind: str,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    folds: list[Fold],
    s: TrainingSettings,
    progress: FitProgress | None = None,
) -> np.ndarray:
    """Out-of-fold class probabilities (NaN on rows that are in no test block)."""
    oof = np.full((len(X), len(CLASSES)), np.nan)
    for i, f in enumerate(folds):
        model = FITTERS[kind](rows_of(X, f.train_idx), y[f.train_idx], w[f.train_idx], s)  # views: no copy of X
        oof[f.test_idx] = model.predict_proba(rows_of(X, f.test_idx))
        if progress is not None:
            progress.done(i, len(f.train_idx))
    return oof


def meta_inputs(rf_proba: np.ndarray, xgb_proba: np.ndarray, regime: pd.Series | np.ndarray) -> np.ndarray:
    """The meta-learner's inputs: both models' probabilities and the regime, one-hot."""
    reg = np.asarray(regime)
    onehot = np.stack([(reg == r).astype(float) for r in REGIMES], axis=1)
    return np.hstack([rf_proba, xgb_proba, onehot])


def fit_meta(Z: np.ndarray, y: np.ndarray, seed: int) -> LogisticRegression:
    """A multinomial logistic regression: it stacks and calibrates the base probabilities."""
    _check_classes(y, "meta_learner")
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=500, random_state=seed).fit(Z, y.astype(int))


def nested_meta_oof(Z: np.ndarray, y: np.ndarray, fold_of_row: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-sample meta-learner probabilities: fold k is predicted by a meta fit on folds < k."""
    out = np.full((len(Z), len(CLASSES)), np.nan)
    for k in np.unique(fold_of_row[fold_of_row >= 0])[1:]:
        train, test = (fold_of_row >= 0) & (fold_of_row < k), fold_of_row == k
        out[test] = fit_meta(Z[train], y[train], seed).predict_proba(Z[test])
    return out


@dataclass
class StackedModel:
    """The deployable bundle: both base models and the meta-learner over their probabilities."""

    feature_names: list[str]
    rf: RandomForestClassifier
    xgb: XGBClassifier
    meta: LogisticRegression
    classes: tuple[int, ...] = CLASSES
    info: dict = field(default_factory=dict)

    def base_probabilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.rf.predict_proba(X), self.xgb.predict_proba(X)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities for rows holding the features and a ``regime`` column."""
        missing = [c for c in self.feature_names + ["regime"] if c not in frame.columns]
        if missing:
            raise ValueError(f"prediction rows lack columns {missing[:5]}; recompute feature_matrix")
        X = feature_array(frame, self.feature_names)
        rf_p, xgb_p = self.base_probabilities(X)
        return self.meta.predict_proba(meta_inputs(rf_p, xgb_p, frame["regime"]))
