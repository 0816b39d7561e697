"""Blocking schema checks (one per table asset, from its Pandera model) and domain checks."""


import pandas as pd
from dagster import AssetCheckResult, AssetChecksDefinition, AssetKey, asset_check

from stockml_assets.assets.data import FeatureMatrixSchema
from stockml_assets.metadata import md_table
from stockml_core import schemas
from stockml_core.features import warmup_violations

# raw_prices validates inside its asset (bad prices must never be stored); every other table here.
SCHEMA_OF = {
    "market_universe": schemas.MarketUniverseSchema,
    "market_context": schemas.MarketContextSchema,
    "market_regimes": schemas.MarketRegimesSchema,
    "rare_event_catalog": schemas.RareEventCatalogSchema,
    "rare_event_archive": schemas.RareEventArchiveSchema,
    "feature_matrix": FeatureMatrixSchema,
    "labels": schemas.LabelsSchema,
    "training_set": schemas.TrainingSetSchema,
    "validation_report": schemas.ValidationReportSchema,
    "backtest_report": schemas.BacktestReportSchema,
    "shap_values": schemas.ShapValuesSchema,
    "shap_importance": schemas.ShapImportanceSchema,
    "promotion_decision": schemas.PromotionDecisionSchema,
    "production_model": schemas.ProductionModelSchema,
    "predictions": schemas.PredictionsSchema,
    "feature_drift": schemas.FeatureDriftSchema,
    "regime_drift": schemas.MixDriftSchema,
    "prediction_drift": schemas.MixDriftSchema,
    "drift_report": schemas.DriftReportSchema,
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


@asset_check(asset=AssetKey("feature_matrix"), blocking=True,
             description="every feature is finite after its warm-up (lookback from the feature registry)")
def features_finite_after_warmup(feature_matrix: pd.DataFrame) -> AssetCheckResult:
    bad = warmup_violations(feature_matrix)
    return AssetCheckResult(passed=bad.empty, metadata={
        "violations": len(bad), "failure_cases": md_table(bad, limit=50)})


@asset_check(asset=AssetKey("predictions"), blocking=True, description="each row's class probabilities sum to 1")
def predictions_probabilities_sum_to_one(predictions: pd.DataFrame) -> AssetCheckResult:
    err = (predictions[["p_down", "p_flat", "p_up"]].sum(axis=1) - 1).abs()
    bad = predictions.loc[err > 1e-6, ["ticker", "date"]]
    return AssetCheckResult(passed=bad.empty, metadata={"max_abs_error": float(err.max()) if len(err) else 0.0,
                                                        "failure_cases": md_table(bad)})


SCHEMA_CHECKS = [_schema_check(name, model) for name, model in SCHEMA_OF.items()]
DOMAIN_CHECKS = [features_finite_after_warmup, predictions_probabilities_sum_to_one]
