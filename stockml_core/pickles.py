"""Pickled step outputs whose bytes are checked against a hash kept in the warehouse before unpickling.

Unpickling runs code: a pickle is only as trustworthy as whoever could write it. Dagster's filesystem
IO manager pickles the fitted models (``rf_model``, ``xgb_model``, ``meta_learner``) into
``$STOCKML_HOME/dagster_storage`` and loads them back unchecked, so a crafted file there ran code on the
next materialization. ``PickleStore`` writes each output atomically, records its SHA-256 in the
warehouse (``pickled_outputs``, beside the model registry's hashes: the same trust anchor), and refuses
to unpickle bytes whose hash is not the recorded one. Nothing is unpickled before the check.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stockml_core.faults import dead_writers_files, temp_prefix
from stockml_core.warehouse import Warehouse

TABLE = "pickled_outputs"
DDL = f"create table if not exists {TABLE} (name varchar primary key, sha256 varchar, bytes bigint, run_id varchar, written_at timestamp)"


class PickleIntegrityError(RuntimeError):
    """A stored pickle is missing, unrecorded, or its bytes differ from the recorded hash: not unpickled."""


class PickleStore:
    """Pickles under ``base_dir``, their hashes in ``warehouse``'s ``pickled_outputs`` table."""

    def __init__(self, base_dir: Path, warehouse: Warehouse) -> None:
        self.base_dir, self.warehouse = Path(base_dir), warehouse

    def path(self, name: str) -> Path:
        parts = name.split("/")
        if any(p in ("", ".", "..") or os.sep in p for p in parts):
            raise ValueError(f"not a stored output's name: {name!r}")
        return self.base_dir.joinpath(*parts)

    def save(self, name: str, obj: Any, run_id: str = "") -> str:
        """Pickle ``obj`` to the output's file (written to a temporary file, then renamed) and record its hash."""
        payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        digest = hashlib.sha256(payload).hexdigest()
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        for orphan in dead_writers_files(path.parent, f"-{path.name}"):  # what a killed writer left
            orphan.unlink(missing_ok=True)
        tmp = path.with_name(f"{temp_prefix()}{path.name}")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
        with self.warehouse.connect() as con:
            con.execute(DDL)
            con.execute(
                f"insert or replace into {TABLE} values (?, ?, ?, ?, ?)", [name, digest, len(payload), run_id, datetime.now(UTC).replace(tzinfo=None)]
            )
        return digest

    def recorded(self, name: str) -> str | None:
        if not self.warehouse.has_table(TABLE):
            return None
        rows = self.warehouse.read(f"select sha256 from {TABLE} where name = ?", [name])
        return str(rows.sha256.iloc[0]) if len(rows) else None

    def load(self, name: str) -> Any:
        """Unpickle the output after checking the SHA-256 of the very bytes unpickled; PickleIntegrityError otherwise."""
        path = self.path(name)
        expected = self.recorded(name)
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            raise PickleIntegrityError(f"{name}: no stored output at {path}; materialize {name} first") from None
        actual = hashlib.sha256(payload).hexdigest()
        if expected is None or actual != expected:
            why = "no hash was recorded for it" if expected is None else f"expected sha256 {expected}, found {actual}"
            raise PickleIntegrityError(
                f"{name}: the stored output at {path} failed its integrity check ({why}); it was written by something "
                f"other than a StockML run or changed since, and was not unpickled. Fix: materialize {name} again "
                "(its run writes and records a new one)"
            )
        return pickle.loads(payload)  # noqa: S301 - the bytes match the hash this platform recorded when it wrote them
