"""The training set's store: keys in DuckDB, features in one hash-checked float32 matrix, memory-mapped back."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from stockml_core.modeling import training
from stockml_core.settings import Settings, TrainingSettings
from stockml_core.storage.matrix_store import MatrixIntegrityError, TrainingMatrixStore, feature_array, rows_of
from stockml_core.storage.warehouse import Warehouse

NAMES = [f"f{i}" for i in range(12)]


def _frame(n_days: int = 400, tickers: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2012-01-02", periods=n_days)
    keys = pd.DataFrame([(d, t) for d in dates for t in [f"T{j}" for j in range(tickers)]], columns=["date", "ticker"])
    df = keys.assign(
        sector="Energy",
        regime="normal",
        label=rng.integers(0, 3, len(keys)),
        past_return=rng.normal(size=len(keys)),
        fwd_return=rng.normal(size=len(keys)),
        event=None,
        source="recent",
        weight=1.0,
    )
    for name in NAMES:
        df[name] = rng.normal(size=len(keys)).astype("float32")
    return df[["ticker", "date", *NAMES, "label", "past_return", "fwd_return", "regime", "sector", "event", "source", "weight"]]


@pytest.fixture
def store(tmp_path) -> TrainingMatrixStore:
    return TrainingMatrixStore(tmp_path / "training_sets", Warehouse(tmp_path / "warehouse.duckdb"))


def test_a_stored_set_loads_back_equal_with_its_features_memory_mapped(store) -> None:
    df = _frame()
    rec = store.save_frame(df, NAMES, "run-1")
    back = store.load()
    pd.testing.assert_frame_equal(back[df.columns], df, check_dtype=False)
    assert back[NAMES].dtypes.eq(np.float32).all() and rec["n_rows"] == len(df)
    X = feature_array(back, NAMES)
    assert isinstance(X.base, np.memmap) or isinstance(getattr(X.base, "base", None), np.memmap)
    assert not X.flags.writeable and X.flags.c_contiguous  # the mapped matrix itself, read-only
    assert np.shares_memory(X, back[NAMES[3]].to_numpy())  # the columns are views of it: nothing copied
    with pytest.raises(ValueError, match="read-only"):
        back.loc[0, NAMES[0]] = 1.0
    np.testing.assert_array_equal(feature_array(df, NAMES), df[NAMES].to_numpy(dtype="float32"))  # an ordinary frame: a copy


def test_a_changed_matrix_is_refused_before_it_is_mapped(store) -> None:
    rec = store.save_frame(_frame(), NAMES)
    path = store.folder / f"{rec['sha256']}.npy"
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # one flipped byte in the last row
    path.write_bytes(bytes(raw))
    with pytest.raises(MatrixIntegrityError, match="integrity check"):
        store.load()
    path.unlink()
    with pytest.raises(MatrixIntegrityError, match="missing"):
        store.load()


def test_blocks_short_of_the_keys_store_nothing(store) -> None:
    df = _frame()
    first = store.save_frame(df, NAMES)
    blocks = iter([df[NAMES].to_numpy()[:100]])  # a stream that stopped early
    with pytest.raises(ValueError, match="nothing was stored"):
        store.save(df.drop(columns=NAMES), NAMES, blocks)
    assert store.record()["sha256"] == first["sha256"] and not list(store.folder.glob(".tmp-*"))
    pd.testing.assert_frame_equal(store.load()[df.columns], df, check_dtype=False)


def test_nothing_stored_says_what_to_materialize(store) -> None:
    with pytest.raises(MatrixIntegrityError, match="materialize training_set first"):
        store.load()


def test_old_matrices_are_pruned_and_the_current_one_is_the_last_written(store) -> None:
    recs = [store.save_frame(_frame(seed=s), NAMES) for s in range(4)]
    assert sorted(p.name for p in store.folder.glob("*.npy")) == sorted(f"{r['sha256']}.npy" for r in recs[-2:])
    assert store.record()["sha256"] == recs[-1]["sha256"]
    pd.testing.assert_frame_equal(store.load()[NAMES], _frame(seed=3)[NAMES])


def test_rows_of_is_a_view_for_a_run_of_rows_and_a_copy_otherwise() -> None:
    X = np.arange(40, dtype="float32").reshape(10, 4)
    run, scattered = np.arange(2, 7), np.array([1, 3, 4])
    assert np.shares_memory(rows_of(X, run), X) and np.array_equal(rows_of(X, run), X[run])
    assert not np.shares_memory(rows_of(X, scattered), X) and np.array_equal(rows_of(X, scattered), X[scattered])
    assert rows_of(X, np.array([], dtype=int)).shape == (0, 4)


def test_a_model_trained_on_the_mapped_set_equals_one_trained_in_memory(store, tmp_path) -> None:
    df = _frame(n_days=900, tickers=4)
    store.save_frame(df, NAMES)
    s = Settings(data_dir=tmp_path, home=tmp_path).with_(
        training=replace(TrainingSettings(), rf_trees=10, rf_max_depth=4, n_folds=2, test_years=1.0, min_history_years=1.0)
    )
    a = training.train_base_model("rf", df, NAMES, s)
    b = training.train_base_model("rf", store.load(), NAMES, s)
    np.testing.assert_array_equal(a.oof, b.oof)
