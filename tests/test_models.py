"""Base-model fitters: the training-row caps that keep breadth within the time budget."""

from dataclasses import replace

import numpy as np

from stockml_core import models
from stockml_core.settings import TrainingSettings


def _data(n=2_000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype("float32")
    y = np.digitize(X[:, 0] + rng.normal(scale=0.5, size=n), [-0.4, 0.4])
    return X, y, rng.uniform(0.5, 2.0, n)


def test_xgboost_row_cap_fits_a_seeded_sample_and_predicts_every_row():
    X, y, w = _data()
    s = replace(TrainingSettings(), xgb_rounds=10, n_jobs=1, xgb_max_rows=500)
    capped = models.fit_xgboost(X, y, w, s)
    keep = np.sort(np.random.default_rng(s.seed).choice(len(X), 500, replace=False))
    on_sample = models.fit_xgboost(X[keep], y[keep], w[keep], replace(s, xgb_max_rows=None))
    np.testing.assert_array_equal(capped.predict_proba(X), on_sample.predict_proba(X))
    uncapped = models.fit_xgboost(X, y, w, replace(s, xgb_max_rows=None))
    assert not np.array_equal(uncapped.predict_proba(X), capped.predict_proba(X))
    # At or under the cap nothing is sampled.
    np.testing.assert_array_equal(models.fit_xgboost(X, y, w, replace(s, xgb_max_rows=len(X))).predict_proba(X),
                                  uncapped.predict_proba(X))
