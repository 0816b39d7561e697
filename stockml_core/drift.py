"""Drift of features, of the regime mix and of predictions, combined into one score in [0, 1]."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from stockml_core.settings import DriftSettings


def reference_and_current(dates: pd.Series, s: DriftSettings) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the current window (last ``current_window`` days) and the reference window before it."""
    days = np.sort(pd.to_datetime(dates).unique())
    cur_days = days[-s.current_window:]
    ref_days = days[-(s.current_window + s.reference_window):-s.current_window]
    d = pd.to_datetime(dates).to_numpy()
    return np.isin(d, ref_days), np.isin(d, cur_days)


def psi(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """Population stability index on the reference's quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    r = np.histogram(reference, edges)[0] / len(reference)
    c = np.histogram(current, edges)[0] / len(current)
    r, c = np.clip(r, 1e-4, None), np.clip(c, 1e-4, None)
    return float(((c - r) * np.log(c / r)).sum())


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values."""
    p = np.asarray(p, dtype=float)
    n = len(p)
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.clip(adj, 0, 1)
    return out


def feature_drift(features: pd.DataFrame, feature_names: list[str], s: DriftSettings) -> pd.DataFrame:
    """Per feature: KS statistic, BH-adjusted p-value, PSI, normalized mean shift, drifted flag."""
    ref_mask, cur_mask = reference_and_current(features.date, s)
    rows = []
    for name in feature_names:  # a loop over features; each test is vectorized over rows
        ref = features.loc[ref_mask, name].to_numpy(dtype="float64")
        cur = features.loc[cur_mask, name].to_numpy(dtype="float64")
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        if len(ref) < 20 or len(cur) < 5:
            rows.append({"feature": name, "ks_statistic": np.nan, "p_value": np.nan, "psi": np.nan,
                         "mean_shift": np.nan, "n_reference": len(ref), "n_current": len(cur)})
            continue
        ks = stats.ks_2samp(ref, cur)
        sd = ref.std()
        rows.append({"feature": name, "ks_statistic": float(ks.statistic), "p_value": float(ks.pvalue),
                     "psi": psi(ref, cur, s.psi_bins),
                     "mean_shift": float((cur.mean() - ref.mean()) / sd) if sd > 0 else 0.0,
                     "n_reference": len(ref), "n_current": len(cur)})
    out = pd.DataFrame(rows)
    valid = out.p_value.notna()
    out["p_value_bh"] = np.nan
    out.loc[valid, "p_value_bh"] = benjamini_hochberg(out.loc[valid, "p_value"].to_numpy())
    out["drifted"] = (out.p_value_bh < s.ks_alpha).fillna(False).astype(bool)
    return out.sort_values("ks_statistic", ascending=False, na_position="last").reset_index(drop=True)


def mix_shift(reference: pd.Series, current: pd.Series, categories: list) -> tuple[float, pd.DataFrame]:
    """Total variation distance between two categorical mixes, with the per-category shares."""
    r = reference.value_counts(normalize=True).reindex(categories, fill_value=0.0)
    c = current.value_counts(normalize=True).reindex(categories, fill_value=0.0)
    table = pd.DataFrame({"category": categories, "reference_share": r.to_numpy(), "current_share": c.to_numpy()})
    table["change"] = table.current_share - table.reference_share
    return float(0.5 * np.abs(table.change).sum()), table


def regime_transition(table: pd.DataFrame) -> str:
    """Name the main regime transition, e.g. ``normal -> crash``."""
    if table.change.abs().max() < 1e-9:
        return "none"
    return f"{table.loc[table.change.idxmin(), 'category']} -> {table.loc[table.change.idxmax(), 'category']}"


def drift_score(share_drifted: float, regime_tv: float, prediction_tv: float | None, s: DriftSettings) -> float:
    """One score in [0, 1]: a weighted mean of feature, regime and prediction drift.

    Without a champion there is no prediction drift; its weight is spread over the other two.
    """
    parts = [(s.weight_features, share_drifted), (s.weight_regime, regime_tv)]
    if prediction_tv is not None and np.isfinite(prediction_tv):
        parts.append((s.weight_predictions, prediction_tv))
    total = sum(w for w, _ in parts)
    return float(np.clip(sum(w * v for w, v in parts) / total, 0.0, 1.0))
