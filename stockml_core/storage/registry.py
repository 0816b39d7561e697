"""The model registry: versioned, hash-checked model artefacts and an append-only champion history.

Two DuckDB tables in the warehouse hold the metadata:

* ``model_versions``: one row per registered model (sequential ``v0001``, ``v0002``, ...), with the
  SHA-256 of its artefact file, metrics, lineage and training-set composition as JSON.
* ``model_promotion_history``: one row per champion change (promote, rollback, override). The
  table is append-only; the champion is the version of the event with the highest ``event_id``,
  so inserting one row in one transaction is the atomic switch.

Artefacts are joblib files in ``artefact_dir``; their hash is checked before every unpickling and
before every promotion, so a changed or corrupt file can neither be loaded nor become champion.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import io
import json
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any, TypeVar

import duckdb
import joblib
import numpy as np
import pandas as pd

from stockml_core.faults import dead_writers_files, failpoint, temp_prefix
from stockml_core.storage.pickles import unpickle
from stockml_core.storage.warehouse import Warehouse

# Unpickled models by (artefact path, verified SHA-256 of its bytes): see ModelRegistry.load.
_LOADED: OrderedDict[tuple, Any] = OrderedDict()
_LOADED_LOCK = threading.Lock()
_LOADED_MAX = 3

__all__ = [
    "ACTIONS",
    "TRIGGERS",
    "ArtefactIntegrityError",
    "ChampionEvent",
    "ModelRegistry",
    "ModelVersion",
    "UnknownVersionError",
    "json_dumps",
    "to_jsonable",
]

ACTIONS: tuple[str, ...] = ("promote", "rollback", "override")
"""The kinds of champion event recorded in ``model_promotion_history``."""

_VERSION_PREFIX = "v"
_ARTEFACT_SUFFIX = ".joblib"
_CHUNK = 1 << 20
_MAX_TX_ATTEMPTS = 8

_T = TypeVar("_T")

# DuckDB shares one database instance among the connections of a process, and threads that open
# the same file at the same moment can fail with "Unique file handle conflict". Registry calls on
# one file are therefore serialised per process; between processes DuckDB's own file lock (retried
# by Warehouse.connect) serialises writers.
_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> threading.RLock:
    """Return the process-wide lock of one warehouse file."""
    key = str(path.resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


_DDL = (
    """
    create table if not exists model_versions (
        version       varchar primary key,
        created_at    timestamp not null,  -- UTC
        sha256        varchar not null,
        artefact_path varchar not null,
        metrics       json not null,
        lineage       json not null,
        composition   json not null
    )
    """,
    """
    create table if not exists model_promotion_history (
        event_id  bigint primary key,
        version   varchar not null,
        "at"      timestamp not null,  -- UTC; quoted: AT is a keyword in DuckDB 2
        action    varchar not null,
        actor     varchar not null,
        reason    varchar not null,
        decision  json not null
    )
    """,
    # What triggered the cycle, the candidate's training rows and metrics, whether it became
    # champion (always true here: a rejected candidate leaves no event) and the error if any.
    # Added with IF NOT EXISTS so that warehouses created before these columns are migrated.
    "alter table model_promotion_history add column if not exists trigger varchar",
    "alter table model_promotion_history add column if not exists samples bigint",
    "alter table model_promotion_history add column if not exists metrics json",
    "alter table model_promotion_history add column if not exists promoted boolean",
    "alter table model_promotion_history add column if not exists error varchar",
)
TRIGGERS: tuple[str, ...] = ("scheduled", "drift", "new_event", "manual")


class ArtefactIntegrityError(RuntimeError):
    """A model artefact is missing or its content hash differs from the registered one."""

    def __init__(self, version: str, path: str, expected: str, actual: str | None) -> None:
        self.version = version
        self.path = path
        self.expected = expected
        self.actual = actual
        found = "the file is missing" if actual is None else f"found sha256 {actual}"
        super().__init__(
            f"Artefact of model version {version} at {path} failed its integrity check: expected "
            f"sha256 {expected}, {found}. The file was removed, changed or corrupted after "
            f"registration and will not be unpickled or promoted. Fix: restore the original file "
            f"from a backup (its sha256 must be {expected}), or retrain and register a new "
            f"version and promote that one."
        )


class UnknownVersionError(KeyError):
    """The requested model version is not in the registry."""

    def __init__(self, version: str) -> None:
        self.version = version
        super().__init__(version)

    def __str__(self) -> str:
        """Return a readable message rather than KeyError's quoted key."""
        return f"Unknown model version {self.version!r}: it is not in model_versions. List the registered versions with ModelRegistry.versions()."


@dataclass(frozen=True)
class ModelVersion:
    """One registered model: its version, artefact hash and JSON metadata."""

    version: str
    created_at: dt.datetime
    sha256: str
    artefact_path: str
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    composition: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChampionEvent:
    """One append-only row of the champion history."""

    event_id: int
    version: str
    at: dt.datetime
    action: str
    actor: str
    reason: str
    decision: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# JSON


def to_jsonable(obj: Any) -> Any:
    """Convert numpy, pandas and datetime values to plain JSON types; NaN, NaT and NA become None."""
    if obj is None or obj is pd.NaT or obj is pd.NA:
        return None
    if isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.datetime64):
        return None if np.isnat(obj) else pd.Timestamp(obj).isoformat()
    if isinstance(obj, np.timedelta64):
        return None if np.isnat(obj) else pd.Timedelta(obj).isoformat()
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, decimal.Decimal):
        return to_jsonable(float(obj))
    if isinstance(obj, pd.Timedelta):
        return obj.isoformat()
    if isinstance(obj, dt.timedelta):
        return pd.Timedelta(obj).isoformat()
    if isinstance(obj, dt.datetime | dt.date | dt.time):  # pd.Timestamp is a datetime
        return obj.isoformat()
    if isinstance(obj, pd.Period):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, Mapping):
        return {_json_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.Series):
        return {_json_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(row) for row in obj.to_dict(orient="records")]
    if isinstance(obj, np.ndarray | pd.Index):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        items = [to_jsonable(v) for v in obj]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    raise TypeError(f"Cannot store a value of type {type(obj).__name__} as JSON: {obj!r}")


def _json_key(key: Any) -> str:
    """Turn a mapping key into a JSON object key (numpy, dates and tuples included)."""
    if isinstance(key, str):
        return key
    value = to_jsonable(key)
    return value if isinstance(value, str) else json.dumps(value)


def json_dumps(obj: Mapping[str, Any] | None) -> str:
    """Serialise a mapping to canonical JSON text (sorted keys, no NaN)."""
    return json.dumps(to_jsonable(dict(obj or {})), sort_keys=True, allow_nan=False)


def _json_loads(text: str | None) -> dict[str, Any]:
    """Parse a JSON column value back to a dict (empty dict for NULL)."""
    if text is None:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


# --------------------------------------------------------------------------------------------
# helpers


def _utcnow() -> dt.datetime:
    """Return the current time as an aware UTC datetime with microsecond precision."""
    return dt.datetime.now(dt.UTC)


def _to_db_time(value: dt.datetime) -> dt.datetime:
    """Convert an aware datetime to the naive UTC value stored in TIMESTAMP columns."""
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _from_db_time(value: dt.datetime) -> dt.datetime:
    """Mark a naive UTC value read from a TIMESTAMP column as UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _utc_column(series: pd.Series) -> pd.Series:
    """Mark a naive UTC timestamp column of a DataFrame as UTC."""
    series = pd.to_datetime(series)
    return series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")


def _format_version(number: int) -> str:
    """Return the version name of a sequence number, e.g. 3 -> 'v0003'."""
    return f"{_VERSION_PREFIX}{number:04d}"


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk where the platform allows it (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _require_text(name: str, value: str) -> str:
    """Return a stripped non-empty string or raise ValueError naming the argument."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is required and must be a non-empty string, got {value!r}")
    return value.strip()


_MODEL_COLUMNS = "version, created_at, sha256, artefact_path, metrics, lineage, composition"
_EVENT_COLUMNS = 'event_id, version, "at", action, actor, reason, decision'
_VERSION_ORDER = "cast(substr(version, 2) as bigint), version"


def _row_to_version(row: tuple) -> ModelVersion:
    """Build a ModelVersion from a model_versions row."""
    version, created_at, sha256, path, metrics, lineage, composition = row
    return ModelVersion(
        version=version,
        created_at=_from_db_time(created_at),
        sha256=sha256,
        artefact_path=path,
        metrics=_json_loads(metrics),
        lineage=_json_loads(lineage),
        composition=_json_loads(composition),
    )


def _row_to_event(row: tuple) -> ChampionEvent:
    """Build a ChampionEvent from a model_promotion_history row."""
    event_id, version, at, action, actor, reason, decision = row
    return ChampionEvent(
        event_id=int(event_id),
        version=version,
        at=_from_db_time(at),
        action=action,
        actor=actor,
        reason=reason,
        decision=_json_loads(decision),
    )


# --------------------------------------------------------------------------------------------
# registry


class ModelRegistry:
    """Versioned model artefacts plus an append-only champion history in the DuckDB warehouse."""

    def __init__(self, warehouse: Warehouse, artefact_dir: Path | str) -> None:
        self.warehouse = warehouse
        self.artefact_dir = Path(artefact_dir).resolve()
        self._lock = _file_lock(self.warehouse.path)
        if warehouse.read_only:  # a reader: no folder made, no table created (the registry must exist already)
            return
        self.artefact_dir.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            for ddl in _DDL:
                con.execute(ddl)

    # -- connections and transactions --------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open a warehouse connection while holding this file's process-wide lock."""
        with self._lock, self.warehouse.connect() as con:
            yield con

    def _transaction(self, work: Callable[[duckdb.DuckDBPyConnection], _T]) -> _T:
        """Run ``work`` in one transaction, retrying when a concurrent writer wins the conflict."""
        for attempt in range(_MAX_TX_ATTEMPTS):
            with self._connect() as con:
                con.begin()
                try:
                    result = work(con)
                    con.commit()
                    return result
                except (duckdb.TransactionException, duckdb.ConstraintException):
                    _safe_rollback(con)
                    if attempt == _MAX_TX_ATTEMPTS - 1:
                        raise
                except BaseException:
                    _safe_rollback(con)
                    raise
            time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- versions ----------------------------------------------------------------------------

    def sweep_orphans(self) -> list[Path]:
        """Finish or delete what a killed writer left (``.tmp-PID-*`` files whose process is gone); a live
        writer's file, or one of another naming, is left alone. Returns the temporary files handled.

        A writer killed after committing a version's row and before renaming its artefact into place left
        that version without its file: a temporary file whose content hash is that version's is renamed
        to it (the registration completes, verified by its hash). Any other such file is deleted.
        """
        handled = []
        if self.warehouse.read_only:  # a reader changes nothing
            return handled
        for path in dead_writers_files(self.artefact_dir, _ARTEFACT_SUFFIX):
            missing = self._version_missing_its_file(sha256_file(path))
            if missing is not None:
                os.replace(path, missing)
                _fsync_dir(self.artefact_dir)
            else:
                path.unlink(missing_ok=True)
            handled.append(path)
        return handled

    def _version_missing_its_file(self, sha256: str) -> Path | None:
        """The artefact path of a registered version with this content hash whose file does not exist, or None."""
        with self._connect() as con:
            rows = con.execute("select artefact_path from model_versions where sha256 = ?", [sha256]).fetchall()
        for (name,) in rows:
            path = self.artefact_dir / name
            if not path.exists():
                return path
        return None

    def register(
        self,
        model: Any,
        metrics: Mapping[str, Any],
        lineage: Mapping[str, Any],
        composition: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Store a model artefact, allocate the next version and record it; the champion is unchanged."""
        metrics_json = json_dumps(metrics)
        lineage_json = json_dumps(lineage)
        composition_json = json_dumps(composition)

        self.sweep_orphans()
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(), suffix=_ARTEFACT_SUFFIX, dir=self.artefact_dir)
        tmp_path = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                joblib.dump(model, fh)
                fh.flush()
                os.fsync(fh.fileno())
            sha256 = sha256_file(tmp_path)

            def allocate_and_insert(con: duckdb.DuckDBPyConnection) -> ModelVersion:
                created_at = _utcnow()
                row = con.execute("select coalesce(max(cast(substr(version, 2) as bigint)), 0) from model_versions").fetchone()
                version = _format_version(int(row[0]) + 1)
                # Stored relative to the artefact folder, so a moved STOCKML_HOME keeps its models.
                name = f"{version}{_ARTEFACT_SUFFIX}"
                path = str(self.artefact_dir / name)
                con.execute(
                    f"insert into model_versions ({_MODEL_COLUMNS}) values (?, ?, ?, ?, ?, ?, ?)",
                    [version, _to_db_time(created_at), sha256, name, metrics_json, lineage_json, composition_json],
                )
                return ModelVersion(
                    version=version,
                    created_at=created_at,
                    sha256=sha256,
                    artefact_path=path,
                    metrics=_json_loads(metrics_json),
                    lineage=_json_loads(lineage_json),
                    composition=_json_loads(composition_json),
                )

            # The row is committed before the file takes its final name: once committed the version
            # belongs to this call alone, so the rename can never overwrite another writer's file.
            # Holding the lock across both keeps other threads from seeing the row without its file.
            with self._lock:
                registered = self._transaction(allocate_and_insert)
                failpoint("registry_write")
                os.replace(tmp_path, registered.artefact_path)
            _fsync_dir(self.artefact_dir)
            return registered
        finally:
            tmp_path.unlink(missing_ok=True)

    def get(self, version: str) -> ModelVersion:
        """Return the metadata of one version; UnknownVersionError if it is not registered."""
        with self._connect() as con:
            row = con.execute(f"select {_MODEL_COLUMNS} from model_versions where version = ?", [version]).fetchone()
        if row is None:
            raise UnknownVersionError(version)
        mv = _row_to_version(row)
        return replace(mv, artefact_path=str(self.artefact_dir / mv.artefact_path))

    def verify(self, version: str) -> ModelVersion:
        """Check that a version's artefact exists and matches its registered hash; raise otherwise."""
        mv = self.get(version)
        path = Path(mv.artefact_path)
        actual = sha256_file(path) if path.is_file() else None
        if actual != mv.sha256:
            raise ArtefactIntegrityError(mv.version, mv.artefact_path, mv.sha256, actual)
        return mv

    def load(self, version: str) -> Any:
        """Unpickle a version's model after checking the SHA-256 of the very bytes unpickled.

        The file is read and hashed on every call; the unpickled model of the last few verified
        (path, hash) pairs is kept per process and returned instead of unpickling the same bytes
        again (a daily run scores the champion twice, a replay every day).
        """
        mv = self.get(version)
        path = Path(mv.artefact_path)
        try:
            payload = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ArtefactIntegrityError(mv.version, mv.artefact_path, mv.sha256, None) from None
        actual = hashlib.sha256(payload).hexdigest()
        if actual != mv.sha256:
            raise ArtefactIntegrityError(mv.version, mv.artefact_path, mv.sha256, actual)
        key = (str(path.resolve()), actual)
        with _LOADED_LOCK:
            if key in _LOADED:
                _LOADED.move_to_end(key)
                return _LOADED[key]
        model = unpickle(payload, lambda b: joblib.load(io.BytesIO(b)))
        with _LOADED_LOCK:
            _LOADED[key] = model
            while len(_LOADED) > _LOADED_MAX:
                _LOADED.popitem(last=False)
        return model

    def versions(self) -> pd.DataFrame:
        """Return one row per version in version order, JSON columns as JSON text."""
        with self._connect() as con:
            df = con.execute(f"select {_MODEL_COLUMNS} from model_versions order by {_VERSION_ORDER}").df()
        df["created_at"] = _utc_column(df["created_at"])
        return df.reset_index(drop=True)

    # -- champion ----------------------------------------------------------------------------

    def champion(self) -> ModelVersion | None:
        """Return the version named by the latest champion event, or None before any promotion."""
        event = self.champion_event()
        return None if event is None else self.get(event.version)

    def champion_event(self) -> ChampionEvent | None:
        """Return the latest champion event (the one that made the current champion), or None."""
        with self._connect() as con:
            row = con.execute(f"select {_EVENT_COLUMNS} from model_promotion_history order by event_id desc limit 1").fetchone()
        return None if row is None else _row_to_event(row)

    def promote(
        self,
        version: str,
        *,
        reason: str,
        actor: str = "promotion_gate",
        decision: Mapping[str, Any] | None = None,
        action: str = "promote",
        trigger: str = "manual",
    ) -> ChampionEvent:
        """Make ``version`` the champion by appending one history row, after verifying its artefact.

        ``action`` is ``promote`` (the gate) or ``override`` (a person, with a reason); ``trigger``
        is what started the cycle (one of ``TRIGGERS``).
        """
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        return self._append_event(version, reason=reason, actor=actor, decision=decision, action=action, trigger=trigger)

    def rollback(
        self,
        version: str,
        *,
        reason: str,
        actor: str,
        decision: Mapping[str, Any] | None = None,
    ) -> ChampionEvent:
        """Restore an earlier champion: ``version`` must have been champion before and not be now."""
        return self._append_event(version, reason=reason, actor=actor, decision=decision, action="rollback", trigger="manual")

    def _append_event(
        self,
        version: str,
        *,
        reason: str,
        actor: str,
        decision: Mapping[str, Any] | None,
        action: str,
        trigger: str,
    ) -> ChampionEvent:
        """Verify, then insert one champion event in one transaction (the atomic switch)."""
        reason = _require_text("reason", reason)
        actor = _require_text("actor", actor)
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, got {trigger!r}")
        decision_json = json_dumps(decision)
        mv = self.verify(version)  # UnknownVersionError / ArtefactIntegrityError before any write
        samples = sum(int(v) for v in (mv.composition.get("source") or {}).values()) or None

        def insert(con: duckdb.DuckDBPyConnection) -> ChampionEvent:
            if con.execute("select 1 from model_versions where version = ?", [version]).fetchone() is None:
                raise UnknownVersionError(version)
            latest = con.execute("select event_id, version from model_promotion_history order by event_id desc limit 1").fetchone()
            if action == "rollback":
                was_champion = con.execute("select count(*) from model_promotion_history where version = ?", [version]).fetchone()[0]
                if not was_champion:
                    raise ValueError(
                        f"Cannot roll back to {version}: it has never been champion. A rollback "
                        f"restores an earlier champion; to make a new version champion use promote()."
                    )
                if latest is not None and latest[1] == version:
                    raise ValueError(f"Cannot roll back to {version}: it is already the champion.")
            event_id = (int(latest[0]) if latest is not None else 0) + 1
            at = _utcnow()
            con.execute(
                f"insert into model_promotion_history ({_EVENT_COLUMNS}, trigger, samples, metrics, promoted, error) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [event_id, version, _to_db_time(at), action, actor, reason, decision_json, trigger, samples, json_dumps(mv.metrics), True, None],
            )
            return ChampionEvent(
                event_id=event_id,
                version=version,
                at=at,
                action=action,
                actor=actor,
                reason=reason,
                decision=_json_loads(decision_json),
            )

        return self._transaction(insert)

    def history(self) -> pd.DataFrame:
        """Return every champion event in order, with its champion_from/champion_to interval."""
        with self._connect() as con:
            df = con.execute(
                f"""
                select {_EVENT_COLUMNS}, trigger, samples, metrics, promoted, error,
                       "at" as champion_from,
                       lead("at") over (order by event_id) as champion_to
                from model_promotion_history
                order by event_id
                """
            ).df()
        for column in ("at", "champion_from", "champion_to"):
            df[column] = _utc_column(df[column])
        return df.reset_index(drop=True)


def _safe_rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, ignoring the error when none is open."""
    try:
        con.rollback()
    except duckdb.Error:
        pass
