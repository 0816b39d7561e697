"""The Dagster entry point: ``defs``."""

from dagster import Definitions, colored_console_logger, in_process_executor

from stockml_assets import checks, freshness
from stockml_assets.assets import ASSETS
from stockml_assets.instance_storage import enable_event_batches
from stockml_assets.jobs import JOBS
from stockml_assets.progress import progress_logger
from stockml_assets.resources import build_resources
from stockml_assets.schedules import SCHEDULES
from stockml_assets.sensors import SENSORS

enable_event_batches()  # every process that loads the definitions stores a range run's events in batches
ASSET_CHECKS = [
    *checks.SCHEMA_CHECKS,
    *checks.DOMAIN_CHECKS,
    freshness.caught_up_with_the_feed,
]


def build_definitions(**resource_config) -> Definitions:
    """Definitions for one deployment; ``resource_config`` goes to ``build_resources``."""
    return Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=JOBS,
        sensors=[*SENSORS, freshness.feed_freshness_sensor],
        schedules=SCHEDULES,
        resources=build_resources(**resource_config),
        executor=in_process_executor,
        loggers={"console": colored_console_logger, "progress": progress_logger},
    )


defs = build_definitions()
