"""Tests of the model registry on real DuckDB files and real (small) scikit-learn models."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from stockml_core.storage.registry import (
    ArtefactIntegrityError,
    ModelRegistry,
    UnknownVersionError,
    json_dumps,
)
from stockml_core.storage.warehouse import Warehouse

RNG_SEED = 11


def _model(seed: int = RNG_SEED) -> LogisticRegression:
    """Fit a three-class logistic regression on 50 random rows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(50, 4))
    y = np.arange(50) % 3
    return LogisticRegression(max_iter=200).fit(x, y)


def _probe() -> np.ndarray:
    """Return fixed rows to compare predictions on."""
    return np.random.default_rng(99).normal(size=(10, 4))


def _open(tmp_path: Path) -> ModelRegistry:
    """Open (or reopen) the registry stored under ``tmp_path``."""
    return ModelRegistry(Warehouse(tmp_path / "wh.duckdb", lock_timeout_s=5), tmp_path / "models")


def _tamper(path: str) -> None:
    """Flip one byte in the middle of a file."""
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(path).write_bytes(bytes(data))


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """Return an empty registry on a fresh DuckDB file."""
    return _open(tmp_path)


@pytest.fixture
def three(registry: ModelRegistry) -> ModelRegistry:
    """Return a registry holding v0001..v0003."""
    for seed in range(3):
        registry.register(_model(seed), {"accuracy": 0.4 + seed / 100}, {"run_id": f"r{seed}"})
    return registry


def test_register_assigns_sequential_versions_and_round_trips_metadata(registry: ModelRegistry) -> None:
    """Versions are v0001, v0002; get and versions return the stored JSON."""
    metrics = {"accuracy": np.float64(0.41), "n": np.int64(1200), "crash_accuracy": float("nan")}
    lineage = {
        "dagster_run_id": "abc-123",
        "data_start": pd.Timestamp("2015-01-02"),
        "data_end": dt.date(2024, 12, 31),
        "feature_names": ["ret_5d", "vol_20d"],
        "code_version": "0.1.0",
    }
    composition = {"source": {"recent": 900, "replay": np.int32(200)}, "regime": {"crash": 50}}

    v1 = registry.register(_model(1), metrics, lineage, composition)
    v2 = registry.register(_model(2), {"accuracy": 0.5}, {"dagster_run_id": "def"})

    assert (v1.version, v2.version) == ("v0001", "v0002")
    assert v1.created_at.tzinfo is not None and v1.created_at <= v2.created_at
    assert Path(v1.artefact_path).name == "v0001.joblib" and Path(v1.artefact_path).is_file()
    assert len(v1.sha256) == 64

    got = registry.get("v0001")
    assert got == v1
    assert got.metrics == {"accuracy": 0.41, "n": 1200, "crash_accuracy": None}
    assert got.lineage["data_start"] == "2015-01-02T00:00:00"
    assert got.lineage["data_end"] == "2024-12-31"
    assert got.lineage["feature_names"] == ["ret_5d", "vol_20d"]
    assert got.composition == {"source": {"recent": 900, "replay": 200}, "regime": {"crash": 50}}
    assert registry.get("v0002").composition == {}

    table = registry.versions()
    assert table["version"].tolist() == ["v0001", "v0002"]
    assert json.loads(table.loc[0, "metrics"]) == got.metrics
    assert json.loads(table.loc[0, "lineage"]) == got.lineage
    assert json.loads(table.loc[0, "composition"]) == got.composition
    assert str(table["created_at"].dt.tz) == "UTC"
    assert not list(Path(registry.artefact_dir).glob(".tmp-*"))  # temp files are cleaned up


def test_get_unknown_version_raises(registry: ModelRegistry) -> None:
    """An absent version raises UnknownVersionError (a KeyError) with a readable message."""
    with pytest.raises(UnknownVersionError, match="v0042") as info:
        registry.get("v0042")
    assert isinstance(info.value, KeyError)
    assert registry.versions().empty and registry.champion() is None and registry.history().empty


def test_load_returns_an_equivalent_model(registry: ModelRegistry) -> None:
    """The loaded model predicts the same probabilities as the registered one."""
    model = _model()
    mv = registry.register(model, {"accuracy": 0.4}, {"run_id": "r"})
    loaded = registry.load(mv.version)
    assert type(loaded) is LogisticRegression
    np.testing.assert_array_equal(loaded.predict_proba(_probe()), model.predict_proba(_probe()))


def test_tampered_artefact_cannot_be_loaded_or_promoted(three: ModelRegistry) -> None:
    """A flipped byte is caught before unpickling and before promotion; the champion stays put."""
    three.promote("v0001", reason="first champion")
    three.load("v0002")  # loaded (and kept in memory) while intact: a later change is still caught
    _tamper(three.get("v0002").artefact_path)

    with pytest.raises(ArtefactIntegrityError, match="v0002") as info:
        three.load("v0002")
    message = str(info.value)
    assert three.get("v0002").sha256 in message and "v0002.joblib" in message and "Fix" in message

    with pytest.raises(ArtefactIntegrityError, match="v0002"):
        three.promote("v0002", reason="should not happen")
    assert three.champion().version == "v0001"
    assert len(three.history()) == 1
    three.load("v0003")  # other versions are unaffected


def test_missing_artefact_raises_integrity_error(three: ModelRegistry) -> None:
    """A deleted artefact file is reported as an integrity failure, not a raw OSError."""
    Path(three.get("v0003").artefact_path).unlink()
    with pytest.raises(ArtefactIntegrityError, match="missing"):
        three.load("v0003")
    with pytest.raises(ArtefactIntegrityError, match="v0003"):
        three.promote("v0003", reason="missing file")
    assert three.champion() is None


def test_promote_rollback_and_history(three: ModelRegistry) -> None:
    """Register never moves the champion; promote and rollback append ordered, timed events."""
    assert three.champion() is None
    e1 = three.promote("v0001", reason="first model", decision={"passed": np.bool_(True)})
    assert three.champion().version == "v0001"

    three.register(_model(7), {"accuracy": 0.45}, {"run_id": "r7"})  # v0004
    assert three.champion().version == "v0001"

    e2 = three.promote("v0002", reason="beats baseline", decision={"margin": np.float32(0.5)})
    e3 = three.promote("v0004", reason="beats champion")
    assert three.champion().version == "v0004"

    e4 = three.rollback("v0002", reason="v0004 misbehaves in production", actor="alice")
    assert (e1.event_id, e2.event_id, e3.event_id, e4.event_id) == (1, 2, 3, 4)
    assert e4.action == "rollback" and e4.actor == "alice"
    assert three.champion().version == "v0002"
    assert three.champion_event() == e4

    hist = three.history()
    assert hist["event_id"].tolist() == [1, 2, 3, 4]
    assert hist["version"].tolist() == ["v0001", "v0002", "v0004", "v0002"]
    assert hist["action"].tolist() == ["promote", "promote", "promote", "rollback"]
    assert hist["actor"].tolist() == ["promotion_gate"] * 3 + ["alice"]
    assert hist.loc[3, "reason"] == "v0004 misbehaves in production"
    assert json.loads(hist.loc[0, "decision"]) == {"passed": True}
    assert json.loads(hist.loc[1, "decision"]) == {"margin": 0.5}
    assert (hist["champion_from"] == hist["at"]).all()
    assert hist["champion_to"].iloc[:-1].tolist() == hist["champion_from"].iloc[1:].tolist()
    assert pd.isna(hist["champion_to"].iloc[-1])
    assert hist["at"].is_monotonic_increasing
    assert str(hist["at"].dt.tz) == "UTC"


def test_invalid_rollbacks_leave_the_champion_unchanged(three: ModelRegistry) -> None:
    """Rollback to an unknown, never-champion or current version raises and appends nothing."""
    three.promote("v0001", reason="first")
    three.promote("v0002", reason="second")

    with pytest.raises(UnknownVersionError):
        three.rollback("v0099", reason="typo", actor="bob")
    with pytest.raises(ValueError, match="never been champion"):
        three.rollback("v0003", reason="not allowed", actor="bob")
    with pytest.raises(ValueError, match="already the champion"):
        three.rollback("v0002", reason="no-op", actor="bob")
    with pytest.raises(UnknownVersionError):
        three.promote("v0099", reason="typo")

    assert three.champion().version == "v0002"
    assert len(three.history()) == 2


def test_reason_actor_and_action_are_validated(three: ModelRegistry) -> None:
    """Empty reasons or actors and unknown actions are rejected before anything is written."""
    for reason in ("", "   "):
        with pytest.raises(ValueError, match="reason"):
            three.promote("v0001", reason=reason)
    with pytest.raises(ValueError, match="actor"):
        three.promote("v0001", reason="ok", actor="")
    with pytest.raises(ValueError, match="action"):
        three.promote("v0001", reason="ok", action="delete")
    three.promote("v0001", reason="manual", actor="carol", action="override")
    three.promote("v0002", reason="gate")
    with pytest.raises(ValueError, match="reason"):
        three.rollback("v0001", reason="", actor="carol")
    assert three.champion().version == "v0002"
    assert three.history()["action"].tolist() == ["override", "promote"]


def test_reopened_registry_sees_the_same_state(tmp_path: Path) -> None:
    """A new ModelRegistry on the same files sees the same versions, champion and history."""
    first = _open(tmp_path)
    model = _model()
    first.register(model, {"accuracy": 0.4}, {"run_id": "a"})
    first.register(_model(3), {"accuracy": 0.5}, {"run_id": "b"})
    first.promote("v0002", reason="better")
    first.promote("v0001", reason="manual pick", actor="ops", action="override")
    expected_history = first.history()

    second = _open(tmp_path)  # table creation is idempotent
    assert second.champion() == first.champion()
    assert second.champion().version == "v0001"
    pd.testing.assert_frame_equal(second.history(), expected_history)
    pd.testing.assert_frame_equal(second.versions(), first.versions())
    np.testing.assert_array_equal(second.load("v0001").predict_proba(_probe()), model.predict_proba(_probe()))
    assert second.register(_model(4), {}, {}).version == "v0003"


def test_concurrent_registration_allocates_distinct_versions(tmp_path: Path) -> None:
    """Registrations racing from threads and two registry objects never share a version or file."""
    registries = (_open(tmp_path), _open(tmp_path))
    registry = registries[0]
    models = [_model(seed) for seed in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(registries[seed % 2].register, model, {"seed": seed}, {}) for seed, model in enumerate(models)]
        results = [future.result(timeout=60).version for future in futures]
    assert sorted(results) == ["v0001", "v0002", "v0003", "v0004"]
    for version in results:  # every artefact matches its own row and model
        seed = registry.get(version).metrics["seed"]
        np.testing.assert_array_equal(registry.load(version).predict_proba(_probe()), models[seed].predict_proba(_probe()))


def test_json_dumps_handles_numpy_pandas_and_nan() -> None:
    """Numpy scalars and arrays, timestamps, NaN/NaT/NA and non-string keys become plain JSON."""
    text = json_dumps(
        {
            "f": np.float32(1.5),
            "i": np.int16(3),
            "b": np.bool_(False),
            "nan": np.nan,
            "inf": math.inf,
            "nat": pd.NaT,
            "na": pd.NA,
            "ts": pd.Timestamp("2024-03-01 12:00", tz="UTC"),
            "dt64": np.datetime64("2024-03-01"),
            "arr": np.array([1.0, np.nan]),
            "keys": {np.int64(1): "a", pd.Timestamp("2024-01-01"): "b"},
            "path": Path("models") / "v0001.joblib",
        }
    )
    assert json.loads(text) == {
        "f": 1.5,
        "i": 3,
        "b": False,
        "nan": None,
        "inf": None,
        "nat": None,
        "na": None,
        "ts": "2024-03-01T12:00:00+00:00",
        "dt64": "2024-03-01T00:00:00",
        "arr": [1.0, None],
        "keys": {"1": "a", "2024-01-01T00:00:00": "b"},
        "path": "models/v0001.joblib",
    }
    with pytest.raises(TypeError, match="object"):
        json_dumps({"x": object()})


def test_registry_does_not_import_dagster() -> None:
    """The domain library stays free of dagster."""
    import ast

    import stockml_core.storage.registry as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "dagster" for name in imported)


def test_a_killed_writers_temporary_artefact_is_swept_and_a_live_ones_kept(registry: ModelRegistry) -> None:
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    orphan = registry.artefact_dir / f".tmp-{dead_pid}-abc123.joblib"  # what a kill -9 during joblib.dump leaves
    live = registry.artefact_dir / f".tmp-{os.getppid()}-def456.joblib"  # a writer still at work
    registry.artefact_dir.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"half a model")
    live.write_bytes(b"being written")
    registry.register({"w": 1}, {"accuracy": 0.4}, {"run": "x"})
    assert not orphan.exists() and live.exists()
    assert not [p for p in registry.artefact_dir.glob(".tmp-*") if p != live]  # its own temporary file renamed


def test_a_writer_killed_between_commit_and_rename_has_its_registration_completed(tmp_path) -> None:
    """kill -9 after the version's row is committed and before its artefact is renamed into place (a real
    SIGKILL at the ``registry_write`` failpoint) left a version without its file; the next writer finds the
    temporary file whose hash is that version's and completes the rename."""
    import subprocess
    import sys

    wh, artefacts = tmp_path / "warehouse.duckdb", tmp_path / "models"
    code = (
        "from stockml_core.storage.registry import ModelRegistry; from stockml_core.storage.warehouse import Warehouse; "
        f"ModelRegistry(Warehouse({str(wh)!r}), {str(artefacts)!r}).register({{'w': 1}}, {{'rank_ic': 0.1}}, {{}})"
    )
    killed = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "STOCKML_FAILPOINT": "registry_write"}, capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == -9, killed.stderr
    registry = ModelRegistry(Warehouse(wh), artefacts)
    assert registry.get("v0001") and not (artefacts / "v0001.joblib").exists() and len(list(artefacts.glob(".tmp-*"))) == 1
    registry.register({"w": 2}, {"rank_ic": 0.2}, {})
    assert registry.load("v0001") == {"w": 1} and registry.load("v0002") == {"w": 2}  # both verified by their hash
    assert not list(artefacts.glob(".tmp-*"))
