"""StockML domain library: pure functions on DataFrames plus the warehouse and model registry.

This package never imports dagster; ``stockml_assets`` wires it into software-defined assets.
"""

__version__ = "0.1.0"
