"""The whole asset graph, materialized for real on a slice of the real sample."""

import json

import numpy as np
import pandas as pd
from dagster import AssetKey

from stockml_assets.definitions import defs
from stockml_core.features import FEATURE_NAMES
from stockml_core.registry import ModelRegistry
from stockml_core.warehouse import Warehouse
from tests.conftest import DESIGN_GROUPS as DESIGN_ASSETS


def _table(home, name: str, schema: str = "assets") -> pd.DataFrame:
    return Warehouse(home / "warehouse.duckdb").read(f'select * from "{schema}"."{name}"')


def test_every_design_asset_exists_in_its_group_with_a_blocking_check():
    graph = defs.resolve_asset_graph()
    blocking = {spec.asset_key for node_def in graph.assets_defs for spec in node_def.check_specs
                if spec.blocking}
    for group, names in DESIGN_ASSETS.items():
        for name in names:
            node = graph.get(AssetKey(name))
            assert node.group_name == group, name
            assert AssetKey(name) in blocking, f"{name} has no blocking check"


def test_whole_graph_materializes_on_a_real_slice(materialized):
    assert materialized.result.success
    done = {e.asset_key.to_user_string() for e in materialized.result.get_asset_materialization_events()}
    assert done == {n for names in DESIGN_ASSETS.values() for n in names}


def test_every_blocking_check_passes_on_real_data(materialized):
    evals = [e.event_specific_data for e in materialized.result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    failed = [e.asset_check_key.name for e in evals if not e.passed and e.asset_check_key.name != "candidate_beats_baselines"]
    assert len(evals) >= 30 and failed == []


def test_feature_matrix_is_stored_with_every_registered_feature(materialized):
    fm = _table(materialized.home, "feature_matrix")
    assert len(FEATURE_NAMES) >= 40
    assert list(fm.columns) == ["ticker", "date", *FEATURE_NAMES]
    assert set(fm.ticker) == {"XOM", "JPM", "KO", "IBM", "GE", "AEP"}


def test_candidate_is_registered_with_hash_metrics_and_run_lineage(materialized):
    reg = ModelRegistry(Warehouse(materialized.home / "warehouse.duckdb"), materialized.home / "models")
    mv = reg.verify("v0001")
    assert mv.lineage["dagster_run_id"] == materialized.result.run_id
    assert 0.0 < mv.metrics["accuracy"] < 1.0 and len(mv.sha256) == 64
    assert mv.composition["source"]["recent"] > 0 and mv.composition["source"]["archive"] > 0


def test_first_passing_model_becomes_champion_and_publishes_predictions(materialized):
    champion = _table(materialized.home, "production_model")
    preds = _table(materialized.home, "predictions")
    assert champion.version.tolist() == ["v0001"]
    assert set(preds.ticker) == {"XOM", "JPM", "KO", "IBM", "GE", "AEP"}
    assert preds.date.nunique() == 1 and (preds.model_version == "v0001").all()
    np.testing.assert_allclose(preds[["p_down", "p_flat", "p_up"]].sum(axis=1), 1.0, atol=1e-6)


def test_validation_report_is_out_of_sample_by_scope_with_baselines(materialized):
    rep = _table(materialized.home, "validation_report")
    assert {"overall", "regime", "sector", "symbol", "fold"} <= set(rep.scope)
    assert {"candidate", "rf", "xgb", "majority", "always_up", "previous_direction", "logistic_momentum"} <= set(rep.model)
    ic = rep[rep.metric == "ic"]
    assert {"overall", "regime", "sector", "fold"} <= set(ic.scope) and "symbol" not in set(ic.scope)
    n = rep[(rep.scope == "overall") & (rep.metric == "n")].value
    assert n.nunique() == 1  # every model is scored on the same out-of-sample rows


def test_shap_analysis_table_ranks_every_feature_per_version(materialized):
    shap = _table(materialized.home, "shap_analysis", schema="main")
    assert list(shap.columns) == ["model_version", "regime", "feature_name", "importance_score", "rank", "computed_at"]
    overall = shap[shap.regime == "all"].sort_values("rank")
    assert len(overall) == len(FEATURE_NAMES) and overall["rank"].tolist() == list(range(1, len(FEATURE_NAMES) + 1))
    assert overall.importance_score.is_monotonic_decreasing and (shap.model_version == "v0001").all()


def test_promotion_decision_lists_every_criterion_with_value_and_threshold(materialized):
    d = _table(materialized.home, "promotion_decision")
    names = set(d.name)
    assert {"accuracy_vs_best_baseline", "balanced_accuracy_vs_best_baseline", "crash_regime_accuracy",
            "worst_sector_accuracy", "drift_score", "degradation_vs_champion"} <= names
    assert d.promoted.all() == d.passed.all()


def test_drift_report_scores_in_unit_interval_and_exposes_it_to_sensors(materialized):
    report = _table(materialized.home, "drift_report")
    score = float(report.loc[report.component == "overall", "value"].iloc[0])
    assert 0.0 <= score <= 1.0
    mat = materialized.instance.get_latest_materialization_event(AssetKey("drift_report")).asset_materialization
    assert abs(mat.metadata["drift_score"].value - score) < 1e-12


def test_training_cycle_is_recorded(materialized):
    runs = _table(materialized.home, "training_runs")
    assert runs.run_id.tolist() == [materialized.result.run_id]
    assert runs.promoted.tolist() == [True] and runs.samples.iloc[0] > 1000


def test_backtest_reports_costs_and_buy_and_hold(materialized):
    bt = _table(materialized.home, "backtest_report")
    assert len(bt) > 100 and (bt.turnover >= 0).all()
    mat = materialized.instance.get_latest_materialization_event(AssetKey("backtest_report")).asset_materialization
    assert "strategy_sharpe" in mat.metadata and "buy_and_hold_sharpe" in mat.metadata


def test_training_set_composition_is_recorded(materialized):
    mat = materialized.instance.get_latest_materialization_event(AssetKey("training_set")).asset_materialization
    comp = mat.metadata["composition"].value
    comp = comp if isinstance(comp, dict) else json.loads(comp)
    assert {"recent", "archive"} <= set(comp["source"])


def test_error_replay_buffer_holds_confident_mistakes_with_their_features(materialized):
    buf = _table(materialized.home, "error_replay_buffer")
    assert 0 < len(buf) <= 1000
    assert (buf.label != buf.predicted).all() and buf.error_score.is_monotonic_decreasing
    assert set(FEATURE_NAMES) <= set(buf.columns)
    assert np.isfinite(buf[FEATURE_NAMES].to_numpy(dtype="float64")).all()  # the rows as trained on
    mat = materialized.instance.get_latest_materialization_event(AssetKey("error_replay_buffer")).asset_materialization
    assert mat.metadata["candidate_promoted"].value is True
