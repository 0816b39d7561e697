"""SHAP values of the base models and their global and per-regime importance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stockml_core.modeling.models import StackedModel

if TYPE_CHECKING:
    import xgboost as xgb


def xgb_shap(model: xgb.XGBClassifier, X: np.ndarray) -> np.ndarray:
    """Exact TreeSHAP of the up-minus-down margin, from XGBoost's native contributions."""
    import xgboost as xgb  # imported when used: shap and XGBoost take 2 s to import

    contrib = model.get_booster().predict(xgb.DMatrix(X), pred_contribs=True)  # (n, classes, f + 1)
    return (contrib[:, 2, :-1] - contrib[:, 0, :-1]).astype("float32")


def rf_shap(model, X: np.ndarray) -> np.ndarray:
    """TreeSHAP of the RandomForest's P(up) - P(down) (its depth is bounded, which keeps this fast)."""
    import shap

    values = np.asarray(shap.TreeExplainer(model).shap_values(X, check_additivity=False))
    if values.ndim == 3 and values.shape[-1] == 3:  # (n, features, classes)
        return (values[:, :, 2] - values[:, :, 0]).astype("float32")
    return (values[2] - values[0]).astype("float32")  # older shap: a list per class


def shap_long(model: StackedModel, rows: pd.DataFrame, sample: str) -> pd.DataFrame:
    """Per-prediction SHAP values in long form: one row per (sample row, base model, feature)."""
    X = rows[model.feature_names].to_numpy(dtype="float32")
    frames = []
    for base, values in [("xgb", xgb_shap(model.xgb, X)), ("rf", rf_shap(model.rf, X))]:
        frames.append(
            pd.DataFrame(
                {
                    "sample": sample,
                    "base_model": base,
                    "ticker": np.repeat(rows.ticker.to_numpy(), len(model.feature_names)),
                    "date": np.repeat(rows.date.to_numpy(), len(model.feature_names)),
                    "regime": np.repeat(rows.regime.to_numpy(), len(model.feature_names)),
                    "feature_name": np.tile(model.feature_names, len(rows)),
                    "shap_value": values.reshape(-1).astype("float64"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def importance(shap_values: pd.DataFrame) -> pd.DataFrame:
    """Mean |SHAP| per feature, overall ('all') and per regime, ranked.

    Each base model's mean |SHAP| is normalised to sum to one before the two are averaged, since
    XGBoost's values are margins and the forest's are probabilities.
    """
    sv = shap_values.assign(abs_shap=shap_values.shap_value.abs())
    frames = []
    for regime, part in [("all", sv), *sv.groupby("regime")]:
        per_model = part.groupby(["base_model", "feature_name"]).abs_shap.mean()
        per_model = per_model / per_model.groupby(level=0).transform("sum")
        score = per_model.groupby(level=1).mean().sort_values(ascending=False)
        frames.append(
            pd.DataFrame({"regime": regime, "feature_name": score.index, "importance_score": score.to_numpy(), "rank": np.arange(1, len(score) + 1)})
        )
    return pd.concat(frames, ignore_index=True)


def family_shares(imp: pd.DataFrame) -> pd.DataFrame:
    """The overall importance by feature family (``importance``'s 'all' rows; shares sum to one).

    The ``market`` family holds one value per date for every name (S&P 500, VIX, yields): it cannot
    rank the names of a day by itself, only through its interactions with per-name features, so its
    share says how much of a model's attention goes to timing the market rather than ranking stocks.
    """
    from stockml_core.features import feature_spec

    rows = imp[imp.regime == "all"]
    fam = rows.feature_name.map(lambda n: feature_spec(n).family)
    out = rows.groupby(fam).importance_score.sum().rename_axis("family").reset_index(name="share")
    out["share"] = out.share / out.share.sum()
    out["market_wide"] = out.family == "market"
    return out.sort_values("share", ascending=False).reset_index(drop=True)


def top_contributions(model: StackedModel, rows: pd.DataFrame, k: int = 3) -> list[str]:
    """Why each row got its score: the ``k`` features with the largest |SHAP value| in the XGBoost part's
    up-minus-down margin (XGBoost's native, exact TreeSHAP contributions), as ``"ret_5 -0.041; ..."``
    (positive: pushes the name towards the long side). One string per row, in row order."""
    if rows.empty:
        return []
    values = xgb_shap(model.xgb, rows[model.feature_names].to_numpy(dtype="float32"))
    top = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
    names = np.asarray(model.feature_names)
    picked = np.take_along_axis(values, top, axis=1)
    return ["; ".join(f"{n} {v:+.4f}" for n, v in zip(names[t], p, strict=True)) for t, p in zip(top, picked, strict=True)]
