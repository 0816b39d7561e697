"""Jobs: the whole graph, the daily work, retraining, and rollback to a named version."""

from dagster import AssetSelection, Config, HookContext, OpExecutionContext, define_asset_job, job, op, success_hook

from stockml_assets import release_freed_memory
from stockml_assets.freshness import CHECK_KEY as FRESHNESS_CHECK
from stockml_assets.partitions import TRADING_DAYS
from stockml_assets.resources import DUCKDB_POOL, StockMLResource
from stockml_assets.tags import CADENCE_TAG, DAILY_MONITORING
from stockml_assets.webserver import catch_up_served_partitions
from stockml_core.settings import webserver_url_from_env

# Daily: the universe (sectors.csv re-read: a fixed or extended file is picked up), the new trading day's data,
# features, the champion's predictions, drift, and the rare-event watch.
# The per-day monitoring is selected by the assets' own tag (``tags.DAILY_MONITORING``), once for both jobs.
PER_DAY_MONITORING = AssetSelection.tag(CADENCE_TAG, DAILY_MONITORING[CADENCE_TAG])
DAILY = (
    AssetSelection.assets("market_universe", "raw_prices", "quarantined_prices", "market_context", "market_regimes", "feature_matrix")
    | PER_DAY_MONITORING
) - AssetSelection.checks(FRESHNESS_CHECK)
# (Freshness is judged by feed_freshness_sensor and the CLI, not as a step of every daily run: with it, a
# replay test took 58.7 s against 54.2 s before this change, measured back to back.)
# Retraining: labels, the archive, training, evaluation, explanations and the gate. It never re-measures
# drift, so a retrain cannot re-trigger itself; the next daily run predicts with the new champion.
RETRAINING = (
    AssetSelection.assets("labels")
    | AssetSelection.groups("archive", "training", "evaluation", "explainability", "promotion")
    | AssetSelection.assets("error_replay_buffer", "sector_performance", "training_runs")
)
# History: everything but the per-day monitoring, over a range of trading days in one run.
HISTORY = AssetSelection.all() - PER_DAY_MONITORING


@success_hook
def release_memory(context: HookContext) -> None:
    """Free what a step left (cycles included) and return it to the OS before the next step starts."""
    release_freed_memory()


@success_hook
def trim_memory(context: HookContext) -> None:
    """Return the memory a daily step freed to the OS (no cycle collection: the steps are small, the run is timed)."""
    release_freed_memory(collect=False)


@success_hook
def extend_partitions(context: HookContext) -> None:
    """After a daily run's drift step: when the webserver (``make ui``'s, at STOCKML_WEBSERVER_URL) serves
    partitions that end before this run's (its code loaded afresh, after the feed delivered), ask it to
    reload the definitions, so the UI's partitions end at the new last day. The standalone daemon
    reloads its own code servers every minute."""
    url = webserver_url_from_env()
    if context.op.name != "drift" or not url:
        return
    last, count = TRADING_DAYS.get_last_partition_key(), TRADING_DAYS.get_num_partitions()
    try:
        served = catch_up_served_partitions(url, count)
        if served is not None:
            context.log.info(
                f"the UI served {served:,} trading-day partitions, this run's code {count:,} (to {last}): asked {url} to reload the definitions"
            )
    except OSError as exc:  # the UI catches up on its next reload; the run's work is done
        context.log.warning(f"could not ask {url} to reload the definitions ({exc}); use the UI's 'Reload definitions'")


HOOKS = {release_memory}
full_job = define_asset_job(
    "stockml_full_job",
    selection=HISTORY,
    partitions_def=TRADING_DAYS,
    hooks=HOOKS,
    description="Ingest a range of trading days (one run), rebuild the features and archive, "
    "train and let the gate decide (what `stockml run` runs before the daily run).",
)
daily_job = define_asset_job(
    "daily_job",
    selection=DAILY,
    partitions_def=TRADING_DAYS,
    hooks={trim_memory, extend_partitions},
    description="After the close: ingest the day, its features, predictions, drift, rare-event watch.",
)
retraining_job = define_asset_job(
    "retraining_job", selection=RETRAINING, hooks=HOOKS, description="Train, evaluate, explain and let the gate decide."
)


class RollbackConfig(Config):
    version: str
    reason: str
    actor: str = "operator"


@op(description="Make a named registry version the champion again; recorded in model_promotion_history.", pool=DUCKDB_POOL)
def rollback_champion(context: OpExecutionContext, config: RollbackConfig, stockml: StockMLResource) -> str:
    event = stockml.registry().rollback(config.version, reason=config.reason, actor=config.actor)
    context.log.info(f"champion is now {event.version} (event {event.event_id}): {config.reason}")
    return event.version


@job(description="Roll the champion back to a named version (config: version, reason, actor).")
def rollback_job():
    rollback_champion()


class OverrideConfig(Config):
    version: str
    reason: str  # required: an override without a reason is refused
    actor: str = "operator"


@op(
    description="Make a registered version champion by hand, bypassing the gate; the reason is recorded in "
    "model_promotion_history (action 'override', trigger 'manual').",
    pool=DUCKDB_POOL,
)
def override_champion(context: OpExecutionContext, config: OverrideConfig, stockml: StockMLResource) -> str:
    reg = stockml.registry()
    before = reg.champion()
    event = reg.promote(
        config.version,
        reason=config.reason,
        actor=config.actor,
        action="override",
        trigger="manual",
        decision={"dagster_run_id": context.run_id, "champion_before": before.version if before else None},
    )
    context.log.warning(f"manual override: champion is now {event.version} (was {before.version if before else 'none'}): {config.reason}")
    return event.version


@job(description="Manual override: make a named version the champion without the gate (config: version, reason, actor).")
def override_job():
    override_champion()


JOBS = [full_job, daily_job, retraining_job, rollback_job, override_job]
