"""The whole asset graph, materialized for real on a slice of the real sample."""

import json
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey

from stockml_assets.definitions import defs
from stockml_assets.freshness import CHECK_NAME
from stockml_assets.partitions import TRADING_DAYS, day_keys
from stockml_core.decisions.drift import MARKET_STATES
from stockml_core.features import FEATURE_NAMES
from stockml_core.modeling.explain import family_shares, xgb_shap
from stockml_core.storage.registry import ModelRegistry
from stockml_core.storage.warehouse import Warehouse
from tests.conftest import DESIGN_GROUPS as DESIGN_ASSETS
from tests.conftest import (
    HISTORY_ASSETS,
    MONITORING_ONLY,
    PARTITIONED_ASSETS,
    SLICE_START,
    TRAINING_AND_GATE,
    definitions,
    job_assets,
    materialized_keys,
    materialized_partitions,
)


def _table(home, name: str, schema: str = "assets") -> pd.DataFrame:
    return Warehouse(home / "warehouse.duckdb").read(f'select * from "{schema}"."{name}"')


def test_every_design_asset_exists_in_its_group_with_a_blocking_gate():
    """Every asset has a blocking Dagster asset check. The partitioned ones (per NYSE trading day,
    single-run backfills) validate inside the asset (checks.partition_gate) and report it as their
    ``<asset>_schema`` check, once per run; proven on real runs below."""
    graph = defs.resolve_asset_graph()
    blocking = {spec.asset_key for node_def in graph.assets_defs for spec in node_def.check_specs if spec.blocking}
    assert {n for names in DESIGN_ASSETS.values() for n in names} == {k.to_user_string() for k in graph.get_all_asset_keys()}
    for group, names in DESIGN_ASSETS.items():
        for name in names:
            node = graph.get(AssetKey(name))
            assert node.group_name == group, name
            if name in PARTITIONED_ASSETS:
                assert node.partitions_def == TRADING_DAYS, name
                assert node.backfill_policy is not None and node.backfill_policy.max_partitions_per_run is None, name
            else:
                assert node.partitions_def is None, name
            assert AssetKey(name) in blocking, f"{name} has no blocking check"


def test_whole_graph_materializes_on_a_real_slice(materialized):
    assert materialized.result.success and materialized.daily.success
    assert job_assets("stockml_full_job") == HISTORY_ASSETS
    assert materialized_keys(materialized.result) == HISTORY_ASSETS
    # The daily run: the day's ingestion and features, predictions, drift and the rare-event watch; no training.
    daily = job_assets("daily_job")
    assert MONITORING_ONLY | {"raw_prices", "market_context", "feature_matrix"} <= daily
    assert not daily & TRAINING_AND_GATE
    assert materialized_keys(materialized.daily) == daily
    assert HISTORY_ASSETS | daily == {n for names in DESIGN_ASSETS.values() for n in names}
    # The history run is one run over every trading day of the slice; the daily run is the last day's.
    days = day_keys(SLICE_START, materialized.last_day)
    assert len(days) > 3000
    for name in PARTITIONED_ASSETS & HISTORY_ASSETS:
        assert materialized_partitions(materialized.result, name) == days, name
    for name in PARTITIONED_ASSETS:
        assert materialized_partitions(materialized.daily, name) == [materialized.last_day], name


def test_the_per_day_monitoring_is_the_assets_tagged_daily_and_the_jobs_select_it_by_that_tag():
    """The ``monitoring`` group holds the per-day assets and the retraining cycle's records (DESIGN.md): the
    jobs tell them apart by the assets' own cadence tag, so the daily assets are named once, on themselves."""
    from stockml_assets.definitions import defs
    from stockml_assets.tags import CADENCE_TAG

    graph = defs.resolve_asset_graph()
    tagged = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).tags.get(CADENCE_TAG) == "daily"}
    assert tagged == MONITORING_ONLY
    assert tagged <= job_assets("daily_job")
    ingestion_to_features = {"market_universe", "raw_prices", "quarantined_prices", "market_context", "market_regimes", "feature_matrix"}
    assert job_assets("daily_job") - tagged == ingestion_to_features
    assert not job_assets("stockml_full_job") & tagged


def test_every_blocking_check_passes_on_real_data(materialized):
    evals = [e.event_specific_data for e in materialized.result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    failed = [e.asset_check_key.name for e in evals if not e.passed and e.asset_check_key.name != "candidate_beats_baselines"]
    checked = {e.asset_key.to_user_string() for e in evals}
    assert checked == HISTORY_ASSETS and len(evals) >= 20 and failed == []
    # A partitioned asset's gate is one evaluation per run (not per partition), naming the days it covered.
    for result in (materialized.result, materialized.daily):
        gates = [
            e.event_specific_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.event_specific_data.asset_key.to_user_string() in PARTITIONED_ASSETS
            and e.event_specific_data.asset_check_key.name != CHECK_NAME
        ]  # freshness: tests/test_freshness.py
        names = [g.asset_check_key.name for g in gates]
        ran = PARTITIONED_ASSETS & {k for k in materialized_keys(result)}
        assert sorted(names) == sorted(f"{a}_schema" for a in ran) and all(g.passed for g in gates), names
        assert all(g.metadata["rows checked"].value > 0 for g in gates)
    # The partitioned assets' in-asset gates passed on every partition they wrote (schema + domain checks).
    for result in (materialized.result, materialized.daily):
        for mat in result.get_asset_materialization_events():
            name = mat.asset_key.to_user_string()
            if name in PARTITIONED_ASSETS:
                meta = mat.materialization.metadata
                assert f"{name}_schema" in meta["checks passed"].value, name
                assert meta["rows checked"].value > 0, name
    features = next(
        e for e in materialized.daily.get_asset_materialization_events() if e.asset_key.to_user_string() == "feature_matrix"
    ).materialization.metadata
    assert "features_finite_after_warmup" in features["checks passed"].value


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
    # Published by the daily run for the slice's last day, with the champion the history run promoted.
    assert preds.date.nunique() == 1 and f"{preds.date.iloc[0]:%Y-%m-%d}" == materialized.last_day
    assert (preds.model_version == "v0001").all()
    np.testing.assert_allclose(preds[["p_down", "p_flat", "p_up"]].sum(axis=1), 1.0, atol=1e-6)
    # Every published prediction says why: the champion's 3 largest XGBoost SHAP contributions, recomputed here
    # from the hash-verified artefact on the stored feature rows.
    model = ModelRegistry(Warehouse(materialized.home / "warehouse.duckdb"), materialized.home / "models").load("v0001")
    feats = _table(materialized.home, "feature_matrix")
    rows = preds[["ticker", "date"]].merge(feats, on=["ticker", "date"])
    values = xgb_shap(model.xgb, rows[model.feature_names].to_numpy(dtype="float32"))
    for i, text in enumerate(preds.set_index(["ticker", "date"]).loc[list(zip(rows.ticker, rows.date, strict=True))].top_features):
        parts = [p.rsplit(" ", 1) for p in text.split("; ")]
        assert len(parts) == 3
        j = int(np.argmax(np.abs(values[i])))
        assert parts[0][0] == model.feature_names[j] and float(parts[0][1]) == pytest.approx(values[i, j], abs=1e-4)


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
    # The share of the market-wide family (one value per date) is reported beside it.
    fam = family_shares(shap[shap.model_version == "v0001"])
    assert fam.share.sum() == pytest.approx(1.0) and fam.market_wide.sum() == 1 and "market" in set(fam.family)


def test_promotion_decision_lists_every_criterion_with_value_and_threshold(materialized):
    d = _table(materialized.home, "promotion_decision")
    assert list(d.name) == [
        "rank_ic_vs_best_baseline",
        "rank_ic_t",
        "net_sharpe_vs_best_baseline",
        "crash_regime_rank_ic",
        "worst_sector_accuracy",
        "replay_improvement",
        "recent_days_vs_production",
        "rank_ic_vs_champion",
    ]
    assert d.promoted.all() == d.passed.all()
    assert set(d.outcome) <= {"pass", "fail", "not applicable"}
    assert d.set_index("name").outcome["rank_ic_vs_champion"] == "not applicable"  # the first model: no champion yet
    assert d[d.applicable].threshold.notna().all()


def test_the_decision_shows_the_typed_evidence_the_gate_judged(materialized):
    """The promotion decision's metadata holds GateEvidence as JSON: the candidate's record and every baseline's on
    the same rows, the replay and recent comparisons; absent evidence as null, never NaN."""
    import json

    from stockml_core.modeling.evaluation import ALL_BASELINES, headline

    record = _latest_metadata(materialized, "promotion_decision")["gate evidence (what the gate judged)"].value
    json.dumps(record, allow_nan=False)  # valid JSON for the UI: no NaN anywhere
    h = headline(_table(materialized.home, "validation_report"))
    assert record["rank_ic"] == pytest.approx(h["rank_ic"]) and record["rank_ic_t"] == pytest.approx(h["rank_ic_t"])
    assert set(record["baselines"]) == set(ALL_BASELINES)
    assert record["baselines"]["momentum_12_1"]["rank_ic"] == pytest.approx(h["momentum_12_1_rank_ic"])
    assert record["replay"]["n"] == 0.0 and record["recent"]["days"] == 0.0  # a first cycle: nothing replayed or published
    assert "headline" not in record and "accuracy" not in record


def test_drift_report_scores_in_unit_interval_and_exposes_it_to_sensors(materialized):
    report = _table(materialized.home, "drift_report")
    assert list(report.columns) == ["date", "component", "value", "weight", "detail"]
    assert {f"{d:%Y-%m-%d}" for d in report.date} == {materialized.last_day}
    assert set(report.component) == {"features", "regime", "predictions", "overall"}
    score = float(report.loc[report.component == "overall", "value"].iloc[0])
    assert 0.0 <= score <= 1.0
    assert report.set_index("component").weight["predictions"] > 0  # the champion's predictions are part of it
    mat = materialized.instance.get_latest_materialization_event(AssetKey("drift_report")).asset_materialization
    assert mat.partition == materialized.last_day
    assert abs(mat.metadata["drift_score"].value - score) <= 5e-5  # rounded for reading
    assert abs(mat.metadata["daily_scores"].value[materialized.last_day] - score) < 1e-12  # exact: the sensors read it
    drift = _table(materialized.home, "feature_drift")
    assert set(drift.feature) == set(FEATURE_NAMES) and {f"{d:%Y-%m-%d}" for d in drift.date} == {materialized.last_day}
    # the regime part is the mix of market states (the regimes plus correction), and it is what the report weighs
    mix = _table(materialized.home, "regime_drift")
    assert set(mix.category) == set(MARKET_STATES) and {f"{d:%Y-%m-%d}" for d in mix.date} == {materialized.last_day}
    regime = float(report.loc[report.component == "regime", "value"].iloc[0])
    assert abs(regime - 0.5 * mix.change.abs().sum()) < 1e-12


def _latest_metadata(materialized, asset: str) -> dict:
    return materialized.instance.get_latest_materialization_event(AssetKey(asset)).asset_materialization.metadata


def test_the_decision_and_its_plots_are_small_enough_for_the_ui_to_show_inline(materialized):
    """Issue 16: Dagster shows Markdown metadata in place only under 1,000 characters; the decision, its
    criteria and the charts that matter are written to fit, titled with the model version and the date."""
    from stockml_assets.inline import INLINE_LIMIT

    version = _table(materialized.home, "promotion_decision").candidate_version.iloc[0]
    decision = _latest_metadata(materialized, "promotion_decision")
    inline = {
        "promotion_decision": [k for k in decision if k in ("decision", "criteria") or k.startswith("decile book equity")],
        "backtest_report": [k for k in _latest_metadata(materialized, "backtest_report") if k.startswith("equity curve (")],
        "validation_report": [k for k in _latest_metadata(materialized, "validation_report") if k.startswith("reliability (")],
        "shap_importance": [k for k in _latest_metadata(materialized, "shap_importance") if k.startswith("top features (")],
        "drift_report": ["drift score, last 250 trading days"],
    }
    assert all(len(keys) for keys in inline.values()) and len(inline["promotion_decision"]) == 3, inline
    for asset, keys in inline.items():
        meta = _latest_metadata(materialized, asset)
        for key in keys:
            md = meta[key].value
            assert len(md) < INLINE_LIMIT, (asset, key, len(md))
            assert "nan" not in md.replace("financ", "").lower().split("data:")[0], (asset, key)
            if key not in ("decision", "criteria"):
                assert md.startswith("![chart](<data:image/svg+xml,") and "too much to draw" not in md, (asset, key)
    assert f"**{'PROMOTE' if decision['verdict'].value == 'PROMOTE' else 'REJECT'} {version}**" in decision["decision"].value
    rows = decision["criteria"].value.splitlines()[2:]
    assert len(rows) == 8 and all(("| pass " in r) or ("| **FAIL** " in r) or ("| n/a " in r) for r in rows), rows
    assert f"{version} decile book" in unquote(decision[inline["promotion_decision"][2]].value)
    assert materialized.last_day in unquote(_latest_metadata(materialized, "drift_report")["drift score, last 250 trading days"].value)
    assert decision["candidate_rank_ic"].value == round(decision["candidate_rank_ic"].value, 4)  # readable, not 17 digits
    # numbers that change over time are numeric metadata, so the asset's Plots tab charts them
    assert all(isinstance(decision[k].value, float) for k in ("candidate_rank_ic", "candidate_rank_ic_t", "production_live_rank_ic"))


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


def test_the_stored_training_set_equals_the_in_memory_build_of_every_column(materialized):
    """training_set decides its rows from keys and a finiteness flag computed in DuckDB, then streams the features
    to its float32 matrix block by block: the set must be the one the in-memory build (every feature read into
    pandas, rows chosen there) gives, feature for feature, and it loads back memory-mapped."""
    from stockml_core.modeling import training
    from stockml_core.storage.matrix_store import TrainingMatrixStore, feature_array

    home = materialized.home
    stockml = definitions(**materialized.config).resources["stockml"]
    s = stockml.settings()
    stored = TrainingMatrixStore(s.training_set_dir, Warehouse(home / "warehouse.duckdb")).load()
    base = feature_array(stored, FEATURE_NAMES)
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    assert base is not None  # a view of the mapped file, not a copy

    def table(name):
        df = _table(home, name)
        return df.assign(date=pd.to_datetime(df.date).astype("datetime64[ns]")) if "date" in df else df

    archive = table("rare_event_archive")
    features = table("feature_matrix")  # the whole matrix, as the set was built before
    samples = training.model_samples(features, table("labels"), table("market_regimes"), table("market_universe"))
    expected = training.build_training_set(samples, archive, None, FEATURE_NAMES, s)  # the first cycle: no replay yet
    cols = [c for c in expected.columns if c in stored.columns]
    assert set(expected.columns) - set(cols) == set() and len(stored) == len(expected) > 1000
    pd.testing.assert_frame_equal(stored[cols], expected[cols], check_dtype=False)
    np.testing.assert_array_equal(feature_array(stored, FEATURE_NAMES), expected[FEATURE_NAMES].to_numpy("float32"))
