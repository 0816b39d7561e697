"""Base-model fitters: the training-row caps that keep breadth within the time budget."""

from dataclasses import replace

import numpy as np

from stockml_core.modeling import models
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
    np.testing.assert_array_equal(models.fit_xgboost(X, y, w, replace(s, xgb_max_rows=len(X))).predict_proba(X), uncapped.predict_proba(X))


def test_a_capped_xgboost_sample_is_streamed_in_blocks_not_copied_whole(monkeypatch):
    """The sample reaches XGBoost block by block: the Python-side allocations stay within a few blocks,
    far under the copy of the whole sample (what a capped fit at 1M rows used to make: 0.9 GB)."""
    import tracemalloc

    X, y, w = _data(n=120_000, seed=3)
    X = np.ascontiguousarray(np.repeat(X, 8, axis=1))  # 48 features: the copy would be 19 MB
    s = replace(TrainingSettings(), xgb_rounds=3, n_jobs=1, xgb_max_rows=100_000)
    monkeypatch.setattr(models, "XGB_SAMPLE_BLOCK", 8_192)
    models.fit_xgboost(X[:5_000], y[:5_000], w[:5_000], s)  # imports and first-call allocations out of the way
    tracemalloc.start()
    streamed = models.fit_xgboost(X, y, w, s)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    whole_copy = 100_000 * X.shape[1] * 4
    assert peak < whole_copy / 3, f"peak {peak:,} bytes against a {whole_copy:,}-byte copy"
    # Several blocks: XGBoost merges their quantile sketches; the model is the sampled fit's, up to the bin edges.
    keep = np.sort(np.random.default_rng(s.seed).choice(len(X), 100_000, replace=False))
    on_sample = models.fit_xgboost(X[keep], y[keep], w[keep], replace(s, xgb_max_rows=None))
    assert np.abs(streamed.predict_proba(X[:2_000]) - on_sample.predict_proba(X[:2_000])).max() < 0.02
    assert list(streamed.classes_) == [0, 1, 2]
