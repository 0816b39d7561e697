"""The Pandera models reject what a quant would reject, and name the rows."""

import numpy as np
import pandas as pd

from stockml_core.market.data import load_prices
from stockml_core.schemas import PredictionsSchema, RawPricesSchema, validate
from stockml_core.settings import SAMPLE_DATA_DIR


def _prices() -> pd.DataFrame:
    prices, _ = load_prices(SAMPLE_DATA_DIR, ("XOM",), "2017-10-01")
    return prices


def test_real_prices_are_valid():
    assert validate("raw_prices", _prices(), RawPricesSchema).passed


def test_a_future_date_is_rejected_with_its_row_named():
    prices = _prices()
    future = prices.iloc[[-1]].assign(date=pd.Timestamp.now().normalize() + pd.Timedelta(days=3))
    v = validate("raw_prices", pd.concat([prices, future], ignore_index=True), RawPricesSchema)
    assert not v.passed and "no future dates" in v.summary() and "XOM" in v.summary()


def test_close_outside_the_days_range_is_rejected():
    prices = _prices()
    prices.loc[5, "close"] = prices.loc[5, "high"] * 1.1
    v = validate("raw_prices", prices, RawPricesSchema)
    assert "open and close inside [low, high]" in v.summary()
    assert f"{prices.loc[5, 'date']:%Y-%m-%d}" in v.summary()


def test_predictions_must_have_probabilities_summing_to_one():
    preds = pd.DataFrame(
        {
            "ticker": ["XOM", "KO"],
            "date": pd.to_datetime(["2017-11-10"] * 2),
            "model_version": "v0001",
            "regime": "normal",
            "p_down": [0.2, 0.5],
            "p_flat": [0.3, 0.4],
            "p_up": [0.5, 0.4],
            "signal": ["up", "down"],
            "confidence": [0.5, 0.5],
            "top_features": "ret_5 -0.0410; volatility_60 +0.0220; rsi_14 +0.0100",
        }
    )
    v = validate("predictions", preds, PredictionsSchema)
    assert not v.passed and "sum to 1" in v.summary() and "KO" in v.summary() and "XOM" not in v.summary()


def test_predictions_hold_one_row_per_ticker_and_day():
    day = {
        "model_version": "v0001",
        "regime": "normal",
        "p_down": 0.2,
        "p_flat": 0.3,
        "p_up": 0.5,
        "signal": "up",
        "confidence": 0.5,
        "top_features": "ret_5 -0.0410; volatility_60 +0.0220; rsi_14 +0.0100",
    }
    preds = pd.DataFrame([{"ticker": t, "date": pd.Timestamp(d), **day} for d in ["2017-11-09", "2017-11-10"] for t in ["XOM", "KO"]])
    assert validate("predictions", preds, PredictionsSchema).passed  # a range run: several days per ticker
    twice = pd.concat([preds, preds.iloc[[3]]], ignore_index=True)
    v = validate("predictions", twice, PredictionsSchema)
    assert not v.passed and "KO" in v.summary() and "2017-11-10" in v.summary()


def test_every_column_the_ui_shows_has_a_description_from_its_pandera_model():
    """Issue 16: the asset pages' column tables read their descriptions from the Pandera models (one source)."""
    import inspect

    import pandera.pandas as pa

    from stockml_assets.assets.data import FeatureMatrixSchema
    from stockml_assets.definitions import defs
    from stockml_core import schemas

    models = [c for c in vars(schemas).values() if inspect.isclass(c) and issubclass(c, pa.DataFrameModel) and c is not pa.DataFrameModel] + [
        FeatureMatrixSchema
    ]
    assert [(m.__name__, col) for m in models for col, c in m.to_schema().columns.items() if not c.description] == []
    shown = {
        key.to_user_string(): spec.metadata["dagster/column_schema"]
        for key, spec in ((s.key, s) for s in defs.resolve_all_asset_specs())
        if "dagster/column_schema" in spec.metadata
    }
    assert len(shown) >= 25
    assert [(a, c.name) for a, schema in shown.items() for c in schema.schema.columns if not c.description] == []


def test_one_probability_sum_rule_for_schema_gate_and_out_of_fold_checks() -> None:
    from stockml_core.schemas import PROBABILITY_TOLERANCE, probabilities_off

    p = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.6], [np.nan, 0.5, 0.5], [0.2, 0.3, 0.5 + PROBABILITY_TOLERANCE / 2]])
    assert probabilities_off(p).tolist() == [False, True, False, False]  # a NaN row is not judged by this rule
