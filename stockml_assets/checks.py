"""Blocking schema checks (one per table asset, from its Pandera model) and domain checks."""


import pandas as pd
from dagster import AssetCheckResult, AssetChecksDefinition, AssetKey, asset_check

from stockml_assets.metadata import md_table
from stockml_core import schemas

# Unpartitioned tables. The partitioned ones (raw_prices, market_context, feature_matrix, predictions,
# drift, rare_event_watch) validate the partitions a run writes inside the asset (metadata.checked).
SCHEMA_OF = {
    "market_universe": schemas.MarketUniverseSchema,
    "market_regimes": schemas.MarketRegimesSchema,
    "rare_event_catalog": schemas.RareEventCatalogSchema,
    "rare_event_archive": schemas.RareEventArchiveSchema,
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


def _schema_check(asset_name: str, model) -> AssetChecksDefinition:
    @asset_check(asset=AssetKey(asset_name), name=f"{asset_name}_schema", blocking=True,
                 description=f"Pandera {model.__name__}: columns, types and constraints; failure cases listed")
    def _check(value: pd.DataFrame) -> AssetCheckResult:
        v = schemas.validate(asset_name, value, model)
        return AssetCheckResult(passed=v.passed, metadata={
            "summary": v.summary(), "rows": len(value), "failures": len(v.failures),
            "failure_cases": md_table(v.failures, limit=50)})

    return _check


SCHEMA_CHECKS = [_schema_check(name, model) for name, model in SCHEMA_OF.items()]
DOMAIN_CHECKS: list = []  # the partitioned assets check their own partitions (stockml_assets.metadata)
