"""Every asset check, in three kinds, and the quality gates they are.

* Partition gates (``gate_spec`` / ``partition_gate``): a partitioned asset validates the trading days
  a run writes inside the asset, before anything is stored, and reports it as its ``<asset>_schema`` check.
* Schema checks (``SCHEMA_CHECKS``): the unpartitioned tables, validated by the warehouse IO manager
  before a table replaces the stored one (``check_before_storing``) and reported as ``<asset>_schema``.
* Domain checks (``DOMAIN_CHECKS``): what a schema cannot say (purged folds, valid distributions, the
  champion's content hash, the candidate against its baselines).

The data-calendar freshness check lives with its sensor in ``stockml_assets.freshness``.
"""

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    Failure,
    MaterializeResult,
    asset_check,
)

from stockml_assets.metadata import add_metadata, date_range, md_table, num
from stockml_assets.resources import StockMLResource
from stockml_core import schemas
from stockml_core.modeling import training
from stockml_core.modeling.evaluation import ALL_BASELINES, headline, model_probabilities
from stockml_core.modeling.training import Candidate
from stockml_core.schemas import probabilities_off


def gate_spec(asset_name: str, model, *extra: str) -> AssetCheckSpec:
    """The blocking check a partitioned asset reports for the trading days a run writes: its Pandera
    model and domain checks, run inside the asset before anything is stored (``partition_gate``)."""
    also = f" and {', '.join(extra)}" if extra else ""
    return AssetCheckSpec(
        f"{asset_name}_schema",
        asset=asset_name,
        blocking=True,
        description=f"Pandera {model.__name__}{also} on the trading days a run writes, checked inside "
        "the asset before they are stored: a failure fails the step with the failure "
        "cases and stores nothing (the previous partitions and the champion stay)",
    )


def gate_result(asset_name: str, checks: list[str], rows: int, days: str = "") -> AssetCheckResult:
    """``gate_spec``'s result for a run whose rows passed (a failure never gets here: the step fails)."""
    return AssetCheckResult(
        asset_key=AssetKey(asset_name),
        check_name=f"{asset_name}_schema",
        passed=True,
        metadata={"checks passed": ", ".join(checks), "rows checked": rows, "days": days},
    )


def _has_gate(context, asset_name: str) -> bool:
    return any(k.name == f"{asset_name}_schema" and k.asset_key == AssetKey(asset_name) for k in context.assets_def.check_keys)


def partition_gate(context, asset_name: str, value: pd.DataFrame, model, *extra: tuple[str, pd.DataFrame], output_name: str = "result"):
    """Validate the partitions a run writes, inside the asset, before anything is stored.

    A partitioned asset's blocking gate: on failure the step fails with the failure cases (its
    metadata in the UI) and the stored partitions stay as they were; on success the materialization
    records what was checked, and an asset that declares ``gate_spec`` gets it back as a
    ``MaterializeResult`` carrying the value and the passed check, so the UI's Checks tab shows the gate.
    (The check is evaluated once per run, not once per partition: a 7,000-day backfill's per-partition
    checks spent minutes writing rows.) ``extra``: (check name, failure cases) pairs of domain checks;
    empty means passed.
    """
    checks = check_or_fail(asset_name, value, model, *extra)
    add_metadata(context, {"checks passed": ", ".join(checks), "rows checked": len(value)}, output_name=output_name)
    if not _has_gate(context, asset_name):
        return value
    days = date_range(value) if "date" in value.columns else {}
    return MaterializeResult(
        asset_key=AssetKey(asset_name),
        value=value,
        check_results=[gate_result(asset_name, checks, len(value), f"{days.get('first_date', '')}..{days.get('last_date', '')}" if days else "")],
    )


def check_or_fail(asset_name: str, value: pd.DataFrame, model, *extra: tuple[str, pd.DataFrame]) -> list[str]:
    """``partition_gate``'s checks: the names of the checks passed, or a ``Failure`` naming the failed ones
    with their failure cases (nothing stored)."""
    from dagster import Failure

    from stockml_core import schemas

    v = schemas.validate(asset_name, value, model)
    failed = [(f"{asset_name}_schema", v.failures)] if not v.passed else []
    failed += [(name, cases) for name, cases in extra if len(cases)]
    if failed:
        names = ", ".join(n for n, _ in failed)
        rows = "; ".join(f"{n}: {_first_rows(c)}" for n, c in failed[1 if not v.passed else 0 :] if len(c))
        raise Failure(
            description=f"{asset_name}: {names} failed ({v.summary()}{'; ' + rows if rows else ''}); nothing was "
            "stored, the previous partitions and the champion are unchanged. Fix the rows listed in "
            "failure_cases.",
            metadata={f"{n} failure_cases": md_table(c, limit=50) for n, c in failed},
            allow_retries=False,
        )
    return [f"{asset_name}_schema ({model.__name__})", *(n for n, _ in extra)]


def _first_rows(cases: pd.DataFrame, limit: int = 5) -> str:
    """The first failure cases in one line ("KO Consumer Staples (keep one row per ticker ...)", ...)."""
    shown = []
    for row in cases.head(limit).to_dict("records"):
        fix = row.pop("fix", None)
        shown.append(" ".join(str(v) for v in row.values()) + (f" ({fix})" if fix else ""))
    more = f", and {len(cases) - limit} more" if len(cases) > limit else ""
    return ", ".join(shown) + more


# Unpartitioned tables stored by the warehouse IO manager. The partitioned ones (raw_prices, market_context,
# feature_matrix, predictions, drift, rare_event_watch) and rare_event_archive (built inside DuckDB) validate
# what a run writes inside the asset and report it as their <asset>_schema check (gate_spec above).
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


def _oof_check(result: training.BaseModelResult, horizon: int) -> AssetCheckResult:
    rows = np.isfinite(result.oof).all(axis=1)
    sums_ok = not probabilities_off(result.oof[rows]).any()
    gaps = [
        (f.fold, f.train_end, f.test_start)
        for f in result.folds
        if f.train_end is not None and np.busday_count(f.train_end.date(), f.test_start.date()) <= horizon
    ]
    return AssetCheckResult(
        passed=bool(sums_ok and not gaps and rows.any()),
        metadata={"oof_rows": int(rows.sum()), "probabilities_sum_to_one": sums_ok, "folds_without_purge_gap": str(gaps) if gaps else "none"},
    )


@asset_check(asset="rf_model", blocking=True, description="OOF probabilities valid; every fold purged and embargoed")
def rf_model_walk_forward_valid(stockml: StockMLResource, rf_model: training.BaseModelResult) -> AssetCheckResult:
    return _oof_check(rf_model, stockml.settings().labels.horizon)


@asset_check(asset="xgb_model", blocking=True, description="OOF probabilities valid; every fold purged and embargoed")
def xgb_model_walk_forward_valid(stockml: StockMLResource, xgb_model: training.BaseModelResult) -> AssetCheckResult:
    return _oof_check(xgb_model, stockml.settings().labels.horizon)


@asset_check(asset="meta_learner", blocking=True, description="candidate probabilities are valid distributions")
def meta_learner_probabilities_valid(meta_learner: Candidate) -> AssetCheckResult:
    p = model_probabilities(meta_learner.evaluation, "candidate")
    ok = bool(len(p)) and bool(np.isfinite(p).all()) and not probabilities_off(p).any()
    return AssetCheckResult(passed=ok, metadata={"rows": len(p)})


@asset_check(
    asset="validation_report",
    blocking=False,
    description="the candidate's out-of-sample rank IC beats every "
    "baseline's on the same rows; the promotion gate enforces it with a margin, its t-statistic and the net Sharpe",
)
def candidate_beats_baselines(validation_report: pd.DataFrame) -> AssetCheckResult:
    h = headline(validation_report)
    rows = [{"baseline": b, "rank_ic": h[f"{b}_rank_ic"], "rank_ic_t": h[f"{b}_rank_ic_t"]} for b in ALL_BASELINES]
    ok = all(not np.isfinite(r["rank_ic"]) or h["rank_ic"] > r["rank_ic"] for r in rows) and np.isfinite(h["rank_ic"])
    return AssetCheckResult(
        passed=bool(ok),
        severity=AssetCheckSeverity.WARN,
        metadata={"candidate_rank_ic": num(h["rank_ic"]), "candidate_rank_ic_t": num(h["rank_ic_t"]), "baselines": md_table(pd.DataFrame(rows))},
    )


@asset_check(
    asset="production_model",
    blocking=True,
    description="the champion's artefact matches its content hash, and it reached production through the gate or a recorded manual action",
)
def champion_verified(stockml: StockMLResource, production_model: pd.DataFrame) -> AssetCheckResult:
    if production_model.empty:
        return AssetCheckResult(passed=True, metadata={"champion": "none (no model has passed the gate)"})
    reg = stockml.registry()
    version = str(production_model.version.iloc[0])
    try:
        reg.verify(version)
        hash_ok, detail = True, "sha256 verified"
    except Exception as exc:  # noqa: BLE001 - the check reports any integrity failure
        hash_ok, detail = False, str(exc)
    event = reg.champion_event()
    through_gate = event is not None and event.action in ("promote", "rollback", "override")
    return AssetCheckResult(
        passed=hash_ok and through_gate, metadata={"champion": version, "integrity": detail, "action": event.action if event else ""}
    )


DOMAIN_CHECKS = [
    rf_model_walk_forward_valid,
    xgb_model_walk_forward_valid,
    meta_learner_probabilities_valid,
    candidate_beats_baselines,
    champion_verified,
]
