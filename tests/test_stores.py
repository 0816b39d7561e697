"""The side tables' stores (stockml_core.storage.side_tables) on real DuckDB files: schema, migration, one owner each."""

import pandas as pd

from stockml_core.storage.side_tables import AssetTables, ShapAnalysisStore, TrainingRunsLog
from stockml_core.storage.warehouse import ASSET_SCHEMA, Warehouse


def test_training_runs_log_migrates_a_log_from_before_the_metrics_column(tmp_path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.connect() as con:  # the table as the first versions created it: no metrics column
        con.execute(
            "create table training_runs_log (run_id varchar, recorded_at timestamp, trigger varchar, samples bigint, "
            "candidate_version varchar, accuracy double, balanced_accuracy double, promoted boolean, error varchar)"
        )
        con.execute("insert into training_runs_log values ('old', '2020-01-01', 'manual', 10, 'v0001', 0.5, 0.4, true, null)")
    log = TrainingRunsLog(wh).append({"run_id": "new", "trigger": "drift", "samples": 5, "metrics": '{"rank_ic": 0.01}', "promoted": False})
    assert list(log.columns) == TrainingRunsLog.COLUMNS
    assert list(log.run_id) == ["old", "new"]
    assert log.metrics.iloc[0] is None and log.metrics.iloc[1] == '{"rank_ic": 0.01}'
    assert pd.notna(log.recorded_at.iloc[1])  # defaults to now
    assert TrainingRunsLog(wh).read().run_id.tolist() == ["old", "new"]


def test_shap_analysis_replaces_a_versions_rows_and_tops_the_newest_version(tmp_path) -> None:
    store = ShapAnalysisStore(Warehouse(tmp_path / "w.duckdb"))
    assert store.top().empty and store.read().empty
    imp = pd.DataFrame({"regime": ["all", "all", "bull"], "feature_name": ["a", "b", "a"], "importance_score": [0.7, 0.3, 1.0], "rank": [1, 2, 1]})
    store.replace("v0001", imp)
    store.replace("v0001", imp)  # explained again: replaced, not doubled
    store.replace("v0002", imp.assign(feature_name=["c", "d", "c"]))
    assert len(store.read()) == 6
    assert store.top(1).feature_name.tolist() == ["c"]
    assert store.top(5).feature_name.tolist() == ["c", "d"]


def test_asset_tables_answer_nothing_before_a_materialization_and_create_nothing(tmp_path) -> None:
    path = tmp_path / "w.duckdb"
    Warehouse(path).read("select 1")  # an empty warehouse file
    tables = AssetTables(Warehouse(path, read_only=True))
    assert tables.table("promotion_decision") is None and tables.latest_drift() is None
    assert tables.price_rows() == 0 and tables.price_summary() is None and tables.feature_count() is None
    assert tables.drift_before("2020-01-01").empty
    with Warehouse(path).connect() as con:
        con.execute(f'create schema "{ASSET_SCHEMA}"')
        con.execute(f'create table "{ASSET_SCHEMA}".drift_report (date timestamp, component varchar, value double)')
        con.execute(
            f"insert into \"{ASSET_SCHEMA}\".drift_report values ('2020-01-02', 'overall', 0.1), ('2020-01-03', 'overall', 0.2), "
            "('2020-01-06', 'overall', 0.3), ('2020-01-06', 'feature', 0.9)"
        )
    assert tables.latest_drift() == (pd.Timestamp("2020-01-06"), 0.3)
    assert tables.drift_before("2020-01-06").value.tolist() == [0.2, 0.1]
    assert tables.drift_before(None, limit=2).value.tolist() == [0.3, 0.2]
