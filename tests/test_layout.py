"""The core grouped by concern, and what was written before the regroup still loads.

``tests/fixtures/before_regroup/`` was written at commit eb900a5, when the core was flat
(``stockml_core.models``, ``stockml_core.training``, ``stockml_core.splits``): a small real
``StackedModel`` stored by joblib as the registry stores a champion, its probabilities on
``frame.csv``, and a pickled ``Candidate`` + ``BaseModelResult`` (with a ``Fold``) as the verified-pickle IO
manager stores step outputs.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stockml_core.modeling.models import StackedModel
from stockml_core.modeling.splits import Fold
from stockml_core.modeling.training import BaseModelResult, Candidate
from stockml_core.storage.pickles import MOVED_MODULES, TABLE, PickleStore, old_module_names
from stockml_core.storage.registry import ModelRegistry
from stockml_core.storage.warehouse import Warehouse

ROOT = Path(__file__).resolve().parent.parent
BEFORE = Path(__file__).parent / "fixtures" / "before_regroup"
SOURCE_DIRS = ("stockml_core", "stockml_assets", "tests", "benchmarks")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_code_imports_a_module_by_its_name_before_the_regroup():
    sources = [p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py")]
    assert len(sources) > 50
    stale = {f"{p.relative_to(ROOT)}: {name}" for p in sources for name in _imported_modules(p) & MOVED_MODULES.keys()}
    assert not stale, f"imports of moved modules by their old names: {sorted(stale)}"


def test_every_old_name_points_at_a_module_of_a_concern_and_no_file_is_left_at_it():
    concerns = {"market", "modeling", "decisions", "storage"}
    for old, new in MOVED_MODULES.items():
        assert not (ROOT / (old.replace(".", "/") + ".py")).exists(), old
        assert new.split(".")[1] in concerns, new
        assert importlib.import_module(new).__name__ == new
    flat = sorted(p.stem for p in (ROOT / "stockml_core").glob("*.py"))
    assert flat == ["__init__", "faults", "schemas", "settings"]


def test_the_fixtures_name_the_old_modules_and_do_not_load_without_the_mapping():
    payload = (BEFORE / "step_outputs.pickle").read_bytes()
    for old in ("stockml_core.models", "stockml_core.training", "stockml_core.splits"):
        assert old.encode() in payload
    with pytest.raises(ModuleNotFoundError, match="stockml_core"):
        pickle.loads(payload)  # noqa: S301 - a fixture of this repository


def test_a_champion_registered_before_the_regroup_loads_and_predicts_as_it_did(tmp_path):
    registry = ModelRegistry(Warehouse(tmp_path / "wh.duckdb", lock_timeout_s=5), tmp_path / "models")
    version = registry.register({"placeholder": True}, {"rank_ic": 0.03}, {})
    # What a registry written at eb900a5 holds: the old artefact's bytes and their hash.
    old_bytes = (BEFORE / "champion.joblib").read_bytes()
    Path(version.artefact_path).write_bytes(old_bytes)
    with registry.warehouse.connect() as con:
        con.execute("update model_versions set sha256 = ? where version = ?", [hashlib.sha256(old_bytes).hexdigest(), version.version])

    model = registry.load(version.version)
    assert type(model) is StackedModel and model.info == {"written_by": "eb900a5"}
    frame = pd.read_csv(BEFORE / "frame.csv")
    # The fixture's probabilities were computed on another CPU: the same model, summed in another order
    # (vector width, BLAS/OpenMP kernels), differs in the last bits (1.1e-16 seen on an AMD EPYC without
    # AVX-512). rtol=1e-9 is far above that rounding and far below any change a wrong model would make.
    np.testing.assert_allclose(model.predict_proba(frame), np.load(BEFORE / "champion_proba.npy"), rtol=1e-9, atol=1e-12)
    assert "stockml_core.models" not in sys.modules  # the old name resolved only while unpickling
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("stockml_core.models")


def test_step_outputs_pickled_before_the_regroup_load_through_the_verified_store(tmp_path):
    store = PickleStore(tmp_path / "outputs", Warehouse(tmp_path / "wh.duckdb", lock_timeout_s=5))
    store.save("meta_learner", {"placeholder": True})
    old_bytes = (BEFORE / "step_outputs.pickle").read_bytes()
    shutil.copyfile(BEFORE / "step_outputs.pickle", store.path("meta_learner"))
    with store.warehouse.connect() as con:
        con.execute(f"update {TABLE} set sha256 = ? where name = ?", [hashlib.sha256(old_bytes).hexdigest(), "meta_learner"])

    loaded = store.load("meta_learner")
    candidate, base = loaded["candidate"], loaded["base"]
    assert type(candidate) is Candidate and type(candidate.model) is StackedModel and candidate.version == "v0001"
    assert type(base) is BaseModelResult and base.kind == "rf" and base.oof.shape == (300, 3)
    (fold,) = base.folds
    assert type(fold) is Fold and fold.test_idx.tolist() == list(range(100, 150))
    assert fold.train_end == pd.Timestamp("2014-12-18")
    assert not MOVED_MODULES.keys() & sys.modules.keys()


def test_nested_and_concurrent_readers_share_the_old_names_until_the_last_leaves():
    with old_module_names():
        with old_module_names():
            assert sys.modules["stockml_core.models"] is sys.modules["stockml_core.modeling.models"]
        assert "stockml_core.training" in sys.modules
    assert not MOVED_MODULES.keys() & sys.modules.keys()
