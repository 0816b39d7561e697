"""The training set on disk: its keys in the warehouse, its features as one float32 matrix, memory-mapped.

Every training step (``rf_model``, ``xgb_model``, ``meta_learner``, ``shap_values``, the gate, the
replay buffer, ``training_runs``) reads the training set. Stored as a DuckDB table of 233 columns, each
read converted the whole set into pandas (1.0 GB per million rows, with about 1.4 GB more inside DuckDB
while it converted) and each model then made its own float32 copy: a step peaked at about four times the
set. Here the set is written once, by ``training_set``:

- ``<folder>/<sha256>.npy``: the feature columns as one C-ordered float32 ``(rows, features)`` array
  (a plain ``.npy``, no pickle), streamed to a temporary file in row blocks and renamed into place;
- ``"assets"."training_set"``: the other columns (ticker, date, sector, regime, label, returns, event,
  source, weight), one row per matrix row in the same order (by date, then ticker), for the UI and SQL;
- ``training_matrices``: the matrix's SHA-256, shape and feature names, committed in the same DuckDB
  transaction as the keys, so keys and matrix always belong together.

``load`` checks the file's SHA-256 against the recorded one (the same trust anchor as the model
registry's and the pickles' hashes), memory-maps it read-only and returns a DataFrame whose feature
columns are views of the mapped matrix: nothing is copied, the pages are shared with the page cache, and
``feature_array`` hands a model the matrix itself. Writing into it raises (read-only).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from stockml_core.faults import dead_writers_files, temp_prefix
from stockml_core.storage.registry import sha256_file
from stockml_core.storage.warehouse import ASSET_SCHEMA, Warehouse

TABLE = "training_matrices"
DDL = (
    f"create table if not exists {TABLE} (name varchar primary key, sha256 varchar, n_rows bigint, "
    "features varchar, bytes bigint, run_id varchar, written_at timestamp)"
)
DTYPE = np.dtype("<f4")
BLOCK_ROWS = 65_536  # rows converted and written at a time (65,536 x 223 float32: 58 MB)
KEEP = 2  # matrices kept on disk: the current one and the one before (a reader that mapped it keeps it anyway)


class MatrixIntegrityError(RuntimeError):
    """The stored matrix is missing, unrecorded, or its bytes differ from the recorded hash: not loaded."""


def feature_array(frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """``frame``'s ``names`` columns as one float32 ``(rows, features)`` array.

    A view when those columns are one float32 block in this order (a training set loaded by
    ``TrainingMatrixStore.load``: its memory-mapped matrix), a copy otherwise. Copy-on-write is switched on
    for this one selection only: with it, pandas selects the columns of one block without copying them.
    The result may be read-only; nothing here writes into it.
    """
    with pd.option_context("mode.copy_on_write", True):
        return frame[list(names)].to_numpy(dtype=DTYPE)


def rows_of(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``X[idx]``, as a view (no copy) when ``idx`` is one ascending run of consecutive rows (a walk-forward
    fold's training rows or test block, in a set sorted by date)."""
    idx = np.asarray(idx)
    if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and (len(idx) == 1 or bool((np.diff(idx) == 1).all())):
        return X[int(idx[0]) : int(idx[-1]) + 1]
    return X[idx]


def _header(rows: int, cols: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(DTYPE), "fortran_order": False, "shape": (rows, cols)})
    return buf.getvalue()


class TrainingMatrixStore:
    """One named training set: keys in ``warehouse``'s ``schema``.``name`` table, features in ``folder``."""

    def __init__(self, folder: Path, warehouse: Warehouse, name: str = "training_set", schema: str = ASSET_SCHEMA) -> None:
        self.folder, self.warehouse, self.name, self.schema = Path(folder), warehouse, name, schema

    @property
    def _table(self) -> str:
        return f'"{self.schema}"."{self.name}"'  # identifiers are ours, never data

    def save_frame(self, frame: pd.DataFrame, feature_names: Sequence[str], run_id: str = "") -> dict:
        """Write ``frame`` (keys and features, in the order the set is to be read); return the matrix's record."""
        names = list(feature_names)
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise ValueError(f"{self.name}: the frame lacks feature columns {missing[:5]}")
        blocks = (frame.iloc[a : a + BLOCK_ROWS][names].to_numpy(dtype=DTYPE) for a in range(0, len(frame), BLOCK_ROWS))
        return self.save(frame.drop(columns=names), names, blocks, run_id)

    def save(self, keys: pd.DataFrame, feature_names: Sequence[str], blocks: Iterable[np.ndarray], run_id: str = "") -> dict:
        """Write the set from its ``keys`` (one row per matrix row) and its feature rows as consecutive ``blocks``
        (arrays of ``(rows, features)``, in the keys' order), streamed to disk: the whole matrix is never in
        memory. Nothing replaces the stored set unless every row arrived; returns the matrix's record."""
        names = list(feature_names)
        self.folder.mkdir(parents=True, exist_ok=True)
        for orphan in dead_writers_files(self.folder, ".npy"):  # what a killed writer left
            orphan.unlink(missing_ok=True)
        tmp = self.folder / f"{temp_prefix()}{self.name}.npy"
        h, written = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as f:
                header = _header(len(keys), len(names))
                h.update(header)
                f.write(header)
                for block in blocks:
                    block = np.ascontiguousarray(block, dtype=DTYPE)
                    if block.ndim != 2 or block.shape[1] != len(names):
                        raise ValueError(f"{self.name}: a block of shape {block.shape} for {len(names)} features")
                    h.update(block.data)
                    f.write(block.data)
                    written += len(block)
            if written != len(keys):
                raise ValueError(f"{self.name}: {written:,} feature rows for {len(keys):,} keys; nothing was stored")
            digest = h.hexdigest()
            path = self.folder / f"{digest}.npy"
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        record = {
            "name": self.name,
            "sha256": digest,
            "n_rows": len(keys),
            "features": json.dumps(names),
            "bytes": path.stat().st_size,
            "run_id": run_id,
            "written_at": datetime.now(UTC).replace(tzinfo=None),
        }
        with self.warehouse.connect() as con:
            con.execute(DDL)
            con.execute(f'create schema if not exists "{self.schema}"')
            con.execute("begin transaction")
            try:
                con.execute(f"create or replace table {self._table} as select * from keys")
                con.execute(f"insert or replace into {TABLE} values (?, ?, ?, ?, ?, ?, ?)", list(record.values()))
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
        self._prune(keep=path)
        return record

    def _prune(self, keep: Path) -> None:
        """Delete all but the ``KEEP`` newest matrices (``keep``, just written, always stays)."""
        stored = sorted((p for p in self.folder.glob("*.npy") if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in [p for p in stored if p != keep][KEEP - 1 :]:
            old.unlink(missing_ok=True)

    def record(self) -> dict | None:
        """The current matrix's record (sha256, n_rows, features, bytes, run_id, written_at), or None."""
        if not self.warehouse.has_table(TABLE):
            return None
        rows = self.warehouse.read(f"select * from {TABLE} where name = ?", [self.name])
        if not len(rows):
            return None
        rec = rows.iloc[0].to_dict()
        rec["features"] = json.loads(rec["features"])
        return rec

    def load(self) -> pd.DataFrame:
        """The stored set: its keys, and its features as read-only views of the hash-verified, memory-mapped matrix."""
        rec = self.record()
        if rec is None:
            raise MatrixIntegrityError(f"{self.name}: no stored matrix is recorded; materialize {self.name} first")
        path = self.folder / f"{rec['sha256']}.npy"
        if not path.exists():
            raise MatrixIntegrityError(f"{self.name}: its matrix {path} is missing; materialize {self.name} again")
        actual = sha256_file(path)
        if actual != rec["sha256"]:
            raise MatrixIntegrityError(
                f"{self.name}: the matrix at {path} failed its integrity check (expected sha256 {rec['sha256']}, found "
                f"{actual}): changed since it was written, and not loaded. Fix: materialize {self.name} again"
            )
        X = np.load(path, mmap_mode="r", allow_pickle=False)
        names = rec["features"]
        keys = self.warehouse.read(f"select * from {self._table}")
        if X.shape != (int(rec["n_rows"]), len(names)) or X.dtype != DTYPE or len(keys) != X.shape[0]:
            raise MatrixIntegrityError(
                f"{self.name}: matrix {X.shape} {X.dtype}, {len(keys)} key rows; recorded "
                f"({rec['n_rows']}, {len(names)}): materialize {self.name} again"
            )
        if "date" in keys:
            keys["date"] = pd.to_datetime(keys["date"]).astype("datetime64[ns]")
        return pd.concat([keys, pd.DataFrame(X, columns=names, copy=False)], axis=1, copy=False)
