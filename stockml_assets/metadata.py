"""Metadata helpers: tables, plots and Pandera schemas as Dagster metadata."""

import base64
import io
import math
import warnings
from contextlib import contextmanager

import pandas as pd
from dagster import MetadataValue
from dagster_pandera import pandera_schema_to_dagster_type


def column_schema(model) -> dict:
    """Definition metadata that shows a Pandera model as the asset's column schema in the UI."""
    with warnings.catch_warnings():  # the converter is marked beta; we only read its table schema
        warnings.simplefilter("ignore")
        return {"dagster/column_schema": pandera_schema_to_dagster_type(model).metadata["schema"]}


def num(value, digits: int = 4) -> float:
    """A metric as metadata: rounded for reading (the UI prints every digit of a float), NaN kept."""
    v = float(value)
    return round(v, digits) if math.isfinite(v) else v


def md_table(df: pd.DataFrame, limit: int = 30, floatfmt: str = ".4f") -> MetadataValue:
    """A DataFrame as a markdown table (first ``limit`` rows)."""
    if df.empty:
        return MetadataValue.md("_(empty)_")
    return MetadataValue.md(df.head(limit).to_markdown(index=False, floatfmt=floatfmt))


def md_plot(fig) -> MetadataValue:
    """A matplotlib figure embedded in markdown metadata as a PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})")


def date_range(df: pd.DataFrame, col: str = "date") -> dict:
    if df.empty:
        return {"first_date": "", "last_date": ""}
    return {"first_date": f"{pd.Timestamp(df[col].min()):%Y-%m-%d}", "last_date": f"{pd.Timestamp(df[col].max()):%Y-%m-%d}"}


def add_metadata(context, metadata: dict, output_name: str = "result") -> None:
    """Output metadata of an asset's value (named: assets with checks, and multi-assets, have several outputs)."""
    context.add_output_metadata(metadata, output_name=output_name)


@contextmanager
def malformed_files_fail(asset_name: str):
    """A malformed data file (``DataFolderError``) fails the step at once with the file's own message: it is no
    late feed, so no retry, and a message rather than a stack trace. Nothing is stored."""
    from dagster import Failure

    from stockml_core.market.data import DataFolderError

    try:
        yield
    except DataFolderError as exc:
        raise Failure(
            description=f"{asset_name}: {exc} Nothing was stored; the last good data and the champion are unchanged.", allow_retries=False
        ) from None
