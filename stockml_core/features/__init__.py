"""Per-(ticker, date) model features, each computed strictly from data dated on or before that date.

``compute_features(prices, market=None, sectors=None)`` returns one row per input (ticker, date),
sorted by (ticker, date) with a fresh RangeIndex: ``ticker``, ``date``, then one float32 column per
feature in ``FEATURE_NAMES`` (= ``FEATURE_REGISTRY``) order. The registry (``registry.py``) gives each
feature's family, definition, warm-up and ``ta`` equivalent; ``kernels.py`` computes them.

No look-ahead: a value at (ticker, t) uses that ticker's rows dated <= t; market features use market
rows dated <= t (joined "as of" t, at most ``MARKET_ASOF_TOLERANCE`` old); cross-sectional features
use the other tickers' values on the same date t, which obey the same rule.

Optional inputs: without ``market`` the ``MARKET_FEATURES`` are NaN; without sectors (neither the
``sectors`` frame nor a ``gics_sector`` column in ``prices``) the ``SECTOR_FEATURES`` are NaN.

Incremental path: ``compute_features_since(prices, since, ...)`` computes only the rows dated
>= ``since`` from each ticker's last ``MAX_LOOKBACK`` rows before it, and equals the full recompute
(``update_features`` appends those rows to a stored matrix; the daily run uses it).
"""

from stockml_core.features.engine import (
    ENGINE_VERSION,
    MIN_BLOCK_DAYS,
    block_days,
    compute_features,
    compute_features_since,
    feature_blocks,
    history_fingerprint,
    row_positions,
    update_features,
    warmup_violations,
)
from stockml_core.features.registry import (
    FAMILIES,
    FEATURE_NAMES,
    FEATURE_REGISTRY,
    MARKET_FEATURES,
    MAX_LOOKBACK,
    SECTOR_FEATURES,
    FeatureSpec,
    feature_spec,
    markdown_table,
    registry_frame,
)

__all__ = [
    "FAMILIES",
    "FEATURE_NAMES",
    "FEATURE_REGISTRY",
    "MARKET_FEATURES",
    "MAX_LOOKBACK",
    "MIN_BLOCK_DAYS",
    "SECTOR_FEATURES",
    "ENGINE_VERSION",
    "FeatureSpec",
    "block_days",
    "compute_features",
    "compute_features_since",
    "feature_blocks",
    "feature_spec",
    "history_fingerprint",
    "markdown_table",
    "registry_frame",
    "row_positions",
    "update_features",
    "warmup_violations",
]
