"""Metadata helpers: tables, plots and Pandera schemas as Dagster metadata."""

import base64
import io
import math
import warnings
from contextlib import contextmanager

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, AssetKey, MaterializeResult, MetadataValue
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


def gate_spec(asset_name: str, model, *extra: str) -> AssetCheckSpec:
    """The blocking check a partitioned asset reports for the trading days a run writes: its Pandera
    model and domain checks, run inside the asset before anything is stored (``validated``)."""
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


def validated(context, asset_name: str, value: pd.DataFrame, model, *extra: tuple[str, pd.DataFrame], output_name: str = "result"):
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
    """``validated``'s checks: the names of the checks passed, or a ``Failure`` naming the failed ones
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


def add_metadata(context, metadata: dict, output_name: str = "result") -> None:
    """Output metadata of an asset's value (named: assets with checks, and multi-assets, have several outputs)."""
    context.add_output_metadata(metadata, output_name=output_name)


@contextmanager
def malformed_files_fail(asset_name: str):
    """A malformed data file (``DataFolderError``) fails the step at once with the file's own message: it is no
    late feed, so no retry, and a message rather than a stack trace. Nothing is stored."""
    from dagster import Failure

    from stockml_core.data import DataFolderError

    try:
        yield
    except DataFolderError as exc:
        raise Failure(
            description=f"{asset_name}: {exc} Nothing was stored; the last good data and the champion are unchanged.", allow_retries=False
        ) from None
