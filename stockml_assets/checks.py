"""Blocking schema checks (one per table asset, from its Pandera model) and domain checks."""

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition, AssetKey, Failure, asset_check

from stockml_assets.metadata import md_table
from stockml_core import schemas

# Unpartitioned tables stored by the warehouse IO manager. The partitioned ones (raw_prices, market_context,
# feature_matrix, predictions, drift, rare_event_watch) and rare_event_archive (built inside DuckDB) validate
# what a run writes inside the asset and report it as their <asset>_schema check (metadata.gate_spec).
SCHEMA_OF = {
    "market_universe": schemas.MarketUniverseSchema,
    "market_regimes": schemas.MarketRegimesSchema,
    "rare_event_catalog": schemas.RareEventCatalogSchema,
    "labels": schemas.LabelsSchema,
    "training_set": schemas.TrainingSetSchema,
    "validation_report": schemas.ValidationReportSchema,
    "backtest_report": schemas.BacktestReportSchema,
    "shap_values": schemas.ShapValuesSchema,
    "shap_importance": schemas.ShapImportanceSchema,
    "promotion_decision": schemas.PromotionDecisionSchema,
    "production_model": schemas.ProductionModelSchema,
    "error_replay_buffer": schemas.ErrorReplayBufferSchema,
    "sector_performance": schemas.SectorPerformanceSchema,
    "training_runs": schemas.TrainingRunsSchema,
}


# (run id, asset) -> the validation the warehouse IO manager made before storing the table; its schema check
# reports that one instead of validating the stored copy again (a cache miss, e.g. another process, validates).
_CHECKED_BEFORE_STORING: dict[tuple[str, str], schemas.Validation] = {}


def check_before_storing(asset_name: str, run_id: str, value: pd.DataFrame) -> None:
    """Validate an unpartitioned table before it replaces the stored one; a failure stores nothing."""
    model = SCHEMA_OF.get(asset_name)
    if model is None:
        return
    v = schemas.validate(asset_name, value, model)
    if v.passed:
        _CHECKED_BEFORE_STORING[(run_id, asset_name)] = v
        return
    raise Failure(
        description=f"{asset_name}: {asset_name}_schema failed ({v.summary()}); nothing was stored, the "
        "previous table and the champion are unchanged. The failure cases name the rows.",
        metadata={f"{asset_name}_schema failure_cases": md_table(v.failures, limit=50)},
        allow_retries=False,
    )


def _schema_check(asset_name: str, model) -> AssetChecksDefinition:
    @asset_check(
        asset=AssetKey(asset_name),
        name=f"{asset_name}_schema",
        blocking=True,
        description=f"Pandera {model.__name__}: columns, types and constraints, checked before the table "
        "is stored (a failing table is never stored); failure cases listed",
    )
    def _check(context: AssetCheckExecutionContext, value: pd.DataFrame) -> AssetCheckResult:
        v = _CHECKED_BEFORE_STORING.pop((context.op_execution_context.run_id, asset_name), None) or schemas.validate(asset_name, value, model)
        return AssetCheckResult(
            passed=v.passed,
            metadata={"summary": v.summary(), "rows": len(value), "failures": len(v.failures), "failure_cases": md_table(v.failures, limit=50)},
        )

    return _check


SCHEMA_CHECKS = [_schema_check(name, model) for name, model in SCHEMA_OF.items()]
DOMAIN_CHECKS: list = []  # the partitioned assets check their own partitions (stockml_assets.metadata)
