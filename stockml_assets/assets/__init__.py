"""The asset graph of DESIGN.md, one module per group of concerns: ``ASSETS`` is all of it."""

from dagster import load_assets_from_modules

from stockml_assets.assets import data, modeling, monitoring

ASSETS = load_assets_from_modules([data, modeling, monitoring])
