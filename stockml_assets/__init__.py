"""StockML's Dagster layer: assets, checks, sensors, schedules, jobs and resources."""
