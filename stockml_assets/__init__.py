"""StockML's Dagster layer."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Single-run backfills and freshness policies are marked beta/preview in Dagster 1.13; we use them deliberately.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
