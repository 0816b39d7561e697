"""Pickled step outputs whose bytes are checked against a hash kept in the warehouse before unpickling.

Unpickling runs code: a pickle is only as trustworthy as whoever could write it. Dagster's filesystem
IO manager pickles the fitted models (``rf_model``, ``xgb_model``, ``meta_learner``) into
``$STOCKML_HOME/dagster_storage`` and loads them back unchecked, so a crafted file there ran code on the
next materialization. ``PickleStore`` writes each output atomically, records its SHA-256 in the
warehouse (``pickled_outputs``, beside the model registry's hashes: the same trust anchor), and refuses
to unpickle bytes whose hash is not the recorded one. Nothing is unpickled before the check.

A pickle names the module of every class in it. ``MOVED_MODULES`` maps the modules' names before
``stockml_core`` was grouped by concern (``market/``, ``modeling/``, ``decisions/``, ``storage/``) to
where they are now, so a champion or a step output written before still loads: ``old_module_names``
makes the old names resolve while a pickle is read, and only then (no code can import them).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stockml_core.faults import dead_writers_files, temp_prefix
from stockml_core.storage.warehouse import Warehouse

TABLE = "pickled_outputs"
DDL = f"create table if not exists {TABLE} (name varchar primary key, sha256 varchar, bytes bigint, run_id varchar, written_at timestamp)"


# The modules' names before the regroup (commit eb900a5 and earlier) -> their names now.
MOVED_MODULES = {
    f"stockml_core.{old}": f"stockml_core.{new}"
    for old, new in {
        "data": "market.data",
        "calendar": "market.calendar",
        "quality": "market.quality",
        "events": "market.events",
        "regimes": "market.regimes",
        "labels": "modeling.labels",
        "splits": "modeling.splits",
        "models": "modeling.models",
        "training": "modeling.training",
        "evaluation": "modeling.evaluation",
        "backtest": "modeling.backtest",
        "explain": "modeling.explain",
        "error_analysis": "modeling.error_analysis",
        "promotion": "decisions.promotion",
        "canary": "decisions.canary",
        "drift": "decisions.drift",
        "warehouse": "storage.warehouse",
        "registry": "storage.registry",
        "pickles": "storage.pickles",
        "stores": "storage.side_tables",
        "matrix_store": "storage.matrix_store",
    }.items()
}
_ALIAS_LOCK = threading.Lock()
_alias_users = 0


@contextmanager
def old_module_names() -> Iterator[None]:
    """While inside: ``MOVED_MODULES``' old names are the moved modules themselves, for unpickling.

    The aliases are put into ``sys.modules`` on the first entry and taken out on the last exit, so
    concurrent readers share them and no import outside an unpickling finds an old name."""
    global _alias_users
    with _ALIAS_LOCK:
        if _alias_users == 0:
            for old, new in MOVED_MODULES.items():
                sys.modules.setdefault(old, importlib.import_module(new))
        _alias_users += 1
    try:
        yield
    finally:
        with _ALIAS_LOCK:
            _alias_users -= 1
            if _alias_users == 0:
                for old, new in MOVED_MODULES.items():
                    if sys.modules.get(old) is sys.modules.get(new):
                        del sys.modules[old]


def unpickle(payload: bytes, loads: Callable[[bytes], Any] = pickle.loads) -> Any:
    """``loads(payload)`` with the old module names resolving; call it only on bytes whose hash was checked."""
    with old_module_names():
        return loads(payload)


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
        return unpickle(payload)  # the bytes match the hash this platform recorded when it wrote them
