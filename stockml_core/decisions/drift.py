"""Drift of features, of the regime mix and of predictions, one score in [0, 1], and the retraining policy.

Feature drift is measured against the reference's own variability: a feature drifts when its current
window is further (normalized Wasserstein-1) from the reference than a high quantile of the windows of
the same length inside the reference, and its Benjamini-Hochberg corrected KS test is significant. The
policy (``step_episode``) turns the daily score into retraining triggers: persistence, one trigger per
drift episode, cooldown. ``drift_tables`` measures a run of days: the ``drift``
assets store its tables and ``benchmarks/drift_policy.py`` replays it with ``crash_onsets``, ``quiet_days``
and ``simulate_policy`` on history (``daily_drift_scores``: its scores without a model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from stockml_core.features.registry import registry_frame
from stockml_core.schemas import DriftReportSchema, MixDriftSchema, columns
from stockml_core.settings import DriftSettings

FEATURE_DRIFT_COLUMNS = [
    "feature",
    "wasserstein",
    "threshold",
    "effect",
    "ks_statistic",
    "p_value",
    "p_value_bh",
    "psi",
    "mean_shift",
    "n_reference",
    "n_current",
    "drifted",
]
QUANTILE_GRID = 200  # Wasserstein-1 = mean |Q_cur(u) - Q_ref(u)| over u = (j + 0.5) / QUANTILE_GRID
MIN_REFERENCE = 20  # finite reference values needed to test a feature
MIN_WINDOWS = 3  # calibration windows needed for a threshold
EXACT_KS_MAX = 10_000  # exact KS p-values when n_reference x n_current is at most this (date-level features)

# Crash onsets and quiet days (see crash_onsets / quiet_days).
ONSET_DRAWDOWN = -0.10
ONSET_VIX = 30.0
QUIET_DRAWDOWN = -0.05
QUIET_VIX = 20.0


def reference_and_current(dates: pd.Series, s: DriftSettings) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the current window (last ``current_window`` days) and the reference window before it."""
    d = pd.DatetimeIndex(dates).to_numpy()
    days = np.unique(d)
    if not len(days):
        return np.zeros(len(d), bool), np.zeros(len(d), bool)
    cur = d >= days[max(0, len(days) - s.current_window)]
    if len(days) <= s.current_window:
        return np.zeros(len(d), bool), cur
    return (d >= days[max(0, len(days) - s.current_window - s.reference_window)]) & ~cur, cur


def _psi_sorted(ref: np.ndarray, cur: np.ndarray, bins: int) -> float:
    """PSI of sorted finite samples on the reference's quantile bins (linear-interpolated quantiles)."""
    pos = np.linspace(0, 1, bins + 1) * (len(ref) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(ref) - 1)
    edges = np.unique(ref[lo] + (pos - lo) * (ref[hi] - ref[lo]))
    if len(edges) < 3:
        return 0.0
    inner = edges[1:-1]
    r = np.diff(np.concatenate([[0], np.searchsorted(ref, inner, "left"), [len(ref)]])) / len(ref)
    c = np.diff(np.concatenate([[0], np.searchsorted(cur, inner, "left"), [len(cur)]])) / len(cur)
    r, c = np.clip(r, 1e-4, None), np.clip(c, 1e-4, None)
    return float(((c - r) * np.log(c / r)).sum())


def psi(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """Population stability index on the reference's quantile bins."""
    return _psi_sorted(np.sort(np.asarray(reference, float)), np.sort(np.asarray(current, float)), bins)


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


def _quantiles(sorted_x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Quantile function on the midpoint grid of samples sorted along the last axis (NaN last); n finite counts."""
    u = (np.arange(QUANTILE_GRID) + 0.5) / QUANTILE_GRID
    n = n[..., None]
    idx = np.minimum(np.floor(u * n).astype(np.int64), np.maximum(n - 1, 0))
    return np.where(n > 0, np.take_along_axis(sorted_x, idx, axis=-1), np.nan)


def _at(sorted_x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Linear-interpolated values at fractional positions ``pos`` (F, m) of rows sorted along axis 1."""
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(sorted_x.shape[1] - 1, 0))
    a, b = np.take_along_axis(sorted_x, lo, 1), np.take_along_axis(sorted_x, hi, 1)
    return a + (pos - lo) * (b - a)


def _ks_pvalue(d: np.ndarray, nr: np.ndarray, nc: np.ndarray) -> np.ndarray:
    """Two-sided KS p-values, asymptotic with Stephens' small-sample correction."""
    en = np.sqrt(nr * nc / np.maximum(nr + nc, 1))
    return special.kolmogorov((en + 0.12 + 0.11 / np.maximum(en, 1e-12)) * d)


def _window_stats(ref: np.ndarray, cur: np.ndarray, s: DriftSettings) -> dict[str, np.ndarray]:
    """Drift statistics of ``cur`` (F, days, k) against ``ref`` (F, days, k), k values per day."""
    n_feat, w = ref.shape[0], cur.shape[1]
    r = np.sort(ref.reshape(n_feat, -1), axis=1)
    c = np.sort(cur.reshape(n_feat, -1), axis=1)
    nr, nc = np.isfinite(r).sum(1), np.isfinite(c).sum(1)
    if not r.shape[1] or not c.shape[1]:  # no reference or no current window: nothing to test
        nan = np.full(n_feat, np.nan)
        return {
            "wasserstein": nan,
            "threshold": nan,
            "ks_statistic": nan,
            "p_value": nan,
            "psi": nan,
            "mean_shift": nan,
            "n_reference": nr,
            "n_current": nc,
        }
    min_cur = min(5, s.current_window)
    r0, c0 = np.where(np.isfinite(r), r, 0.0), np.where(np.isfinite(c), c, 0.0)
    mean_r, mean_c = r0.sum(1) / np.maximum(nr, 1), c0.sum(1) / np.maximum(nc, 1)
    sd_r = np.sqrt(np.maximum((r0**2).sum(1) / np.maximum(nr, 1) - mean_r**2, 0))
    pos = np.linspace(0, 1, s.psi_bins + 1)[1:-1]  # PSI bin edges, then the quartiles
    marks = _at(r, np.concatenate([pos, [0.25, 0.75]])[None] * np.maximum(nr - 1, 0)[:, None])
    edges, iqr = marks[:, :-2], (marks[:, -1] - marks[:, -2]) / 1.349
    scale = np.where(iqr > 0, iqr, sd_r)  # robust scale: IQR / 1.349, the std where the IQR is 0
    scale = np.where(scale > 0, scale, np.nan)
    q_ref = _quantiles(r, nr)
    with np.errstate(invalid="ignore"):
        wass = np.abs(_quantiles(c, nc) - q_ref).mean(axis=1) / scale
    # calibration: windows of the current window's length slid across the reference every
    # calibration_step days, the last one ending where the reference ends; each one's normalized W1
    # against the whole reference; the threshold is their calibration_quantile
    starts = np.arange(ref.shape[1] - w, -1, -max(1, s.calibration_step))[::-1]
    threshold = np.full(n_feat, np.nan)
    if len(starts) >= MIN_WINDOWS and w > 0:
        win = np.sort(ref[:, starts[:, None] + np.arange(w)].reshape(n_feat, len(starts), -1), axis=2)
        nw = np.isfinite(win).sum(2)
        with np.errstate(invalid="ignore"):
            ww = np.abs(_quantiles(win, nw) - q_ref[:, None]).mean(axis=2) / scale[:, None]
        ww = np.sort(np.where(nw >= min_cur, ww, np.nan), axis=1)
        n_valid = np.isfinite(ww).sum(1)
        thr = _at(ww, (s.calibration_quantile * np.maximum(n_valid - 1, 0))[:, None])[:, 0]
        threshold = np.where(n_valid >= MIN_WINDOWS, thr, np.nan)
    ok = (nr >= MIN_REFERENCE) & (nc >= min_cur) & np.isfinite(wass) & (threshold > 0)
    ks, p = np.full(n_feat, np.nan), np.full(n_feat, np.nan)
    below_r = np.zeros((n_feat, s.psi_bins + 1))
    below_c = np.zeros((n_feat, s.psi_bins + 1))
    for j in np.flatnonzero(ok):  # sorted samples: the KS statistic and PSI counts by searchsorted
        a, b = r[j, : nr[j]], c[j, : nc[j]]
        # F_a - F_b peaks just before a point of b (or at the end), F_b - F_a at a point of b
        a_lt, a_le = np.searchsorted(a, b, "left") / len(a), np.searchsorted(a, b, "right") / len(a)
        b_lt, b_le = np.searchsorted(b, b, "left") / len(b), np.searchsorted(b, b, "right") / len(b)
        ks[j] = max((a_lt - b_lt).max(), (b_le - a_le).max(), 0.0)
        below_r[j, 1:-1] = np.searchsorted(a, edges[j], "left")
        below_c[j, 1:-1] = np.searchsorted(b, edges[j], "left")
        if len(a) * len(b) <= EXACT_KS_MAX:  # small samples (date-level features): exact p-value
            p[j] = stats.ks_2samp(a, b, method="exact").pvalue
    below_r[:, -1], below_c[:, -1] = nr, nc
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(np.isnan(p), _ks_pvalue(ks, nr, nc), p)
        r_share = np.clip(np.diff(below_r, axis=1) / nr[:, None], 1e-4, None)
        c_share = np.clip(np.diff(below_c, axis=1) / nc[:, None], 1e-4, None)
        psis = ((c_share - r_share) * np.log(c_share / r_share)).sum(1)
        shift = np.where(sd_r > 0, (mean_c - mean_r) / sd_r, 0.0)
    nan = np.where(ok, 1.0, np.nan)
    return {
        "wasserstein": wass * nan,
        "threshold": threshold * nan,
        "ks_statistic": ks,
        "p_value": p * nan,
        "psi": psis * nan,
        "mean_shift": shift * nan,
        "n_reference": nr,
        "n_current": nc,
    }


def _date_level_columns(arr: np.ndarray) -> np.ndarray:
    """Rows of a (F, days, tickers) array with one value per date (identical across tickers)."""
    if arr.shape[2] < 2:
        return np.zeros(arr.shape[0], bool)
    hi, lo = np.fmax.reduce(arr, axis=2), np.fmin.reduce(arr, axis=2)
    same = np.isnan(hi) | (hi - lo <= 1e-9 * np.maximum(1.0, np.abs(hi)))
    shared = (np.isfinite(arr).sum(2) >= 2).any(1)
    return same.all(1) & shared


def feature_drift(features: pd.DataFrame, feature_names: list[str], s: DriftSettings, date_level: set[str] | None = None) -> pd.DataFrame:
    """Per feature: normalized Wasserstein-1 against a threshold calibrated on the reference, KS, PSI, mean shift.

    - current: the last ``current_window`` trading days; reference: the ``reference_window`` days before.
    - ``wasserstein``: W1(current, reference) / scale, scale = IQR / 1.349 of the reference (its std
      where the IQR is 0), on a grid of ``QUANTILE_GRID`` quantiles.
    - ``threshold``: windows of ``current_window`` days slid over the reference every ``calibration_step``
      days (the last ending at the reference's end); the ``calibration_quantile`` of their normalized W1
      against the reference: what the reference's own day-to-day wandering reaches.
    - ``effect`` = wasserstein / threshold; ``p_value_bh``: KS p-values (asymptotic), Benjamini-Hochberg
      corrected across the features tested; ``drifted`` = p_value_bh < ks_alpha and effect > 1.
    - ``date_level`` features (one value per date, e.g. vix_level) are tested on one value per date;
      None detects them (identical across tickers on every date of both windows).
    Features with fewer than 20 finite reference values, fewer than min(5, current_window) current
    ones, fewer than 3 calibration windows or a constant reference: NaN statistics, not drifted.
    Sorted by effect, descending, NaN last.
    """
    ref_mask, cur_mask = reference_and_current(features.date, s)
    sub = features.loc[ref_mask | cur_mask]
    days, day_code = np.unique(pd.DatetimeIndex(sub.date).to_numpy(), return_inverse=True)
    _, tick_code = np.unique(sub.ticker.to_numpy(), return_inverse=True)
    arr = np.full((len(feature_names), len(days), tick_code.max() + 1 if len(sub) else 0), np.nan)
    arr[:, day_code, tick_code] = sub[feature_names].to_numpy(dtype="float64").T
    n_ref = len(days) - int(min(s.current_window, len(days)))
    if date_level is None:
        level = _date_level_columns(arr)
    else:
        level = np.array([f in date_level for f in feature_names], bool)
    out = {}
    for idx, per_date in ((np.flatnonzero(~level), False), (np.flatnonzero(level), True)):
        if not len(idx):
            continue
        x = arr[idx]
        if per_date:  # one value per date: the mean over tickers of identical copies
            cnt = np.isfinite(x).sum(2)
            x = np.where(cnt > 0, np.where(np.isfinite(x), x, 0.0).sum(2) / np.maximum(cnt, 1), np.nan)[:, :, None]
        for k, v in _window_stats(x[:, :n_ref], x[:, n_ref:], s).items():
            out.setdefault(k, np.full(len(feature_names), np.nan))[idx] = v
    table = pd.DataFrame({"feature": list(feature_names), **out})
    table["effect"] = table.wasserstein / table.threshold
    valid = table.p_value.notna()
    table["p_value_bh"] = np.nan
    if valid.any():
        table.loc[valid, "p_value_bh"] = benjamini_hochberg(table.loc[valid, "p_value"].to_numpy())
    table["drifted"] = ((table.p_value_bh < s.ks_alpha) & (table.effect > 1)).astype(bool)
    for c in ("n_reference", "n_current"):
        table[c] = table[c].fillna(0).astype("int64")
    table = table.sort_values("effect", ascending=False, na_position="last", kind="stable")
    return table[FEATURE_DRIFT_COLUMNS].reset_index(drop=True)


def date_level_features() -> set[str]:
    """The registry's market-wide features: one value per date, identical across tickers."""
    r = registry_frame()
    return set(r.feature[r.family == "market"])


def mix_shift(reference: pd.Series, current: pd.Series, categories: list) -> tuple[float, pd.DataFrame]:
    """Total variation distance between two categorical mixes, with the per-category shares."""
    r = reference.value_counts(normalize=True).reindex(categories, fill_value=0.0)
    c = current.value_counts(normalize=True).reindex(categories, fill_value=0.0)
    table = pd.DataFrame({"category": categories, "reference_share": r.to_numpy(), "current_share": c.to_numpy()})
    table["change"] = table.current_share - table.reference_share
    return float(0.5 * np.abs(table.change).sum()), table


MARKET_STATES = ("crash", "high_volatility", "recovery", "correction", "normal")  # the regimes plus correction


def market_states(regimes: pd.DataFrame, s: DriftSettings) -> pd.Series:
    """The market state per row of ``market_regimes``: its regime, except that a ``normal`` day with the
    S&P 500 at or below ``correction_drawdown`` from its running peak and a 20-day return at or below
    ``correction_return_20d`` is ``correction``. Same inputs as the regime, so no look-ahead either.

    The four regimes (the models' input) miss a market that falls steadily while the VIX stays below
    25; the drift score's regime part measures the mix of these five states instead.
    """
    correction = (
        (regimes.regime.to_numpy() == "normal")
        & (regimes.spx_drawdown.to_numpy() <= s.correction_drawdown)
        & (regimes.spx_return_20d.to_numpy() <= s.correction_return_20d)
    )
    return pd.Series(np.where(correction, "correction", regimes.regime.to_numpy()), index=regimes.index, name="state")


def regime_transition(table: pd.DataFrame) -> str:
    """Name the main regime transition, e.g. ``normal -> crash``."""
    if table.change.abs().max() < 1e-9:
        return "none"
    return f"{table.loc[table.change.idxmin(), 'category']} -> {table.loc[table.change.idxmax(), 'category']}"


def prediction_component(tv: float, confidence_shift: float, n_classes: int) -> float:
    """max(TV of the class mix, |confidence shift| / (1 - 1/k)) in [0, 1], k classes.

    The mean confidence (max probability) lies in [1/k, 1]: the shift is scaled by its largest value.
    """
    scaled = abs(confidence_shift) / (1 - 1 / n_classes) if n_classes > 1 and np.isfinite(confidence_shift) else 0.0
    return float(np.clip(max(tv if np.isfinite(tv) else 0.0, scaled), 0.0, 1.0))


def prediction_drift(proba_reference: np.ndarray, proba_current: np.ndarray, class_names) -> tuple[float, pd.DataFrame, dict]:
    """Shift of the predicted (argmax) class mix and of the mean confidence (max probability).

    Returns the prediction component (``prediction_component``), the mix table (category,
    reference_share, current_share, change) and mean_confidence_reference / _current, confidence_shift.
    """
    names = list(class_names)
    pr, pc = np.asarray(proba_reference, float), np.asarray(proba_current, float)
    labels = np.array(names, dtype=object)
    tv, table = mix_shift(
        pd.Series(labels[pr.argmax(axis=1)] if len(pr) else [], dtype=object),
        pd.Series(labels[pc.argmax(axis=1)] if len(pc) else [], dtype=object),
        names,
    )
    conf_r = float(pr.max(axis=1).mean()) if len(pr) else float("nan")
    conf_c = float(pc.max(axis=1).mean()) if len(pc) else float("nan")
    info = {"mean_confidence_reference": conf_r, "mean_confidence_current": conf_c, "confidence_shift": conf_c - conf_r}
    return prediction_component(tv, conf_c - conf_r, len(names)), table, info


def feature_component(table: pd.DataFrame, s: DriftSettings) -> float:
    """Feature part of the score: the share of the tested features (effect not NaN) that drifted.

    On the real sample it separated crash onsets from quiet days as well as the mean clipped effect
    of the drifted features and better than the share of market features alone; it is the simplest.
    """
    tested = table.effect.notna()
    return float(table.drifted[tested].mean()) if tested.any() else 0.0


def drift_score(feature_component: float, regime_tv: float, prediction_component: float | None, s: DriftSettings) -> float:
    """One score in [0, 1]: the weighted mean of the feature, regime and prediction components.

    score = (w_f F + w_r R + w_p P) / (w_f + w_r + w_p), with F = ``feature_component`` (share of the
    tested features drifted), R = total variation of the mix of ``market_states`` (current vs reference
    window), P = ``prediction_component``, w = ``weight_features``, ``weight_regime``, ``weight_predictions``.
    Without a champion (P None or NaN) P and w_p are left out: (w_f F + w_r R) / (w_f + w_r).
    """
    parts = [(s.weight_features, feature_component), (s.weight_regime, regime_tv)]
    if prediction_component is not None and np.isfinite(prediction_component):
        parts.append((s.weight_predictions, prediction_component))
    total = sum(w for w, _ in parts)
    return float(np.clip(sum(w * v for w, v in parts) / total, 0.0, 1.0)) if total > 0 else 0.0


# ------------------------------------------------------------------------------------ retraining policy


@dataclass
class EpisodeState:
    """Policy state carried from day to day (e.g. in a sensor cursor)."""

    last_day: str | None = None
    above_run: int = 0  # consecutive days at or above the threshold
    below_run: int = 0  # consecutive days below it
    episode_start: str | None = None  # first day of the current drift episode
    episode_triggered: bool = False
    days_since_trigger: int | None = None  # trading days since the last trigger

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for logs and skip reasons."""
        ep = f"episode since {self.episode_start}" + (" (retrained)" if self.episode_triggered else "") if self.episode_start else "no drift episode"
        since = "never retrained" if self.days_since_trigger is None else f"last retrain {self.days_since_trigger} days ago"
        return f"{ep}; {self.above_run} day(s) above, {self.below_run} below; {since}"

    @classmethod
    def from_dict(cls, d: dict | None) -> EpisodeState:
        return cls(**(d or {}))


def step_episode(state: EpisodeState, day: str, score: float, s: DriftSettings) -> tuple[EpisodeState, dict | None]:
    """Advance the policy by one trading day; return the new state and a trigger dict or None.

    A drift episode starts on a day with score >= score_threshold and ends after ``persistence_days``
    consecutive days below it. A retrain triggers when the score has been at or above the threshold on
    ``persistence_days`` consecutive days, at most once per episode, and not within ``cooldown_days``
    trading days of the last trigger (an episode held back by the cooldown triggers once the cooldown
    is over, if the score is still up). A day not after ``last_day`` is ignored (a replayed day changes
    nothing); a NaN score counts as below.
    """
    if state.last_day is not None and day <= state.last_day:
        return state, None
    st = EpisodeState(**state.to_dict())
    st.last_day = day
    if st.days_since_trigger is not None:
        st.days_since_trigger += 1
    above = bool(np.isfinite(score) and score >= s.score_threshold)
    if above:
        st.above_run, st.below_run = st.above_run + 1, 0
        if st.episode_start is None:
            st.episode_start, st.episode_triggered = day, False
    else:
        st.above_run, st.below_run = 0, st.below_run + 1
        if st.episode_start is not None and st.below_run >= s.persistence_days:
            st.episode_start, st.episode_triggered = None, False
    cooled = st.days_since_trigger is None or st.days_since_trigger >= s.cooldown_days
    if above and st.above_run >= s.persistence_days and not st.episode_triggered and cooled:
        st.episode_triggered, st.days_since_trigger = True, 0
        reason = f"drift score >= {s.score_threshold:g} on {st.above_run} consecutive trading days (episode since {st.episode_start})"
        return st, {"day": day, "score": float(score), "episode_start": st.episode_start, "reason": reason}
    return st, None


def simulate_policy(daily_scores: pd.Series, s: DriftSettings) -> list[dict]:
    """Replay ``step_episode`` over a date-indexed series of daily scores; the triggers, in order."""
    state, out = EpisodeState(), []
    for day, score in daily_scores.sort_index().items():
        state, trig = step_episode(state, pd.Timestamp(day).strftime("%Y-%m-%d"), float(score), s)
        if trig:
            out.append(trig)
    return out


# ------------------------------------------------------------------------------------ history replay


def _drawdown_vix(market: pd.DataFrame) -> pd.DataFrame:
    m = market[["date", "spx_close", "vix_close"]].dropna().sort_values("date")
    spx = m.spx_close.to_numpy(float)
    return pd.DataFrame(
        {"drawdown": spx / np.maximum.accumulate(spx) - 1.0, "vix": m.vix_close.to_numpy(float)}, index=pd.DatetimeIndex(m.date, name="date")
    )


def crash_onsets(market: pd.DataFrame, quiet_run: int = 1) -> list[pd.Timestamp]:
    """First days the S&P 500 closes >= 10% below its running peak or VIX closes above 30.

    The drawdown is from the running maximum of ``spx_close`` up to that day. After an onset the next
    one needs the market quiet again in between: ``quiet_run`` consecutive ``quiet_days`` (drawdown
    above -5% and VIX below 20; default one such day). The sample starts armed.
    """
    dv = _drawdown_vix(market)
    stress = ((dv.drawdown <= ONSET_DRAWDOWN) | (dv.vix > ONSET_VIX)).to_numpy()
    quiet = quiet_days(market).reindex(dv.index, fill_value=False).to_numpy()
    out, armed, run = [], True, 0
    for day, st, q in zip(dv.index, stress, quiet, strict=True):
        run = run + 1 if q else 0
        if armed and st:
            out.append(day)
            armed = False
        elif run >= quiet_run:
            armed = True
    return out


def quiet_days(market: pd.DataFrame) -> pd.Series:
    """Per date: True when VIX < 20 and the S&P 500 drawdown from its running peak is above -5%."""
    dv = _drawdown_vix(market)
    return ((dv.vix < QUIET_VIX) & (dv.drawdown > QUIET_DRAWDOWN)).rename("quiet")


MIX_COLUMNS = columns(MixDriftSchema)
CONFIDENCE_ROW = "mean_confidence"  # prediction_drift's row for the champion's mean confidence (max probability)
REPORT_COLUMNS = columns(DriftReportSchema)


@dataclass(frozen=True)
class DriftTables:
    """The drift of a run of days, as the four ``drift`` assets store it, plus what their pages show."""

    feature_drift: pd.DataFrame  # date + FEATURE_DRIFT_COLUMNS, per day and feature
    regime_drift: pd.DataFrame  # MIX_COLUMNS: per day, the mix of MARKET_STATES, reference vs current
    prediction_drift: pd.DataFrame  # MIX_COLUMNS: per day, the predicted class mix and CONFIDENCE_ROW (empty without a model)
    report: pd.DataFrame  # REPORT_COLUMNS: per day, the features / regime / predictions components and the overall score
    transitions: dict  # day -> the main market-state transition ("normal -> crash", "none")
    prediction_stats: dict  # day -> the prediction component and the mean confidences (empty without a model)

    def scores(self) -> pd.Series:
        """The overall drift score per day."""
        overall = self.report[self.report.component == "overall"]
        return pd.Series(overall.value.to_numpy(), index=pd.DatetimeIndex(overall.date), name="score")


def _empty_mix() -> pd.DataFrame:
    return pd.DataFrame(
        {"date": pd.Series(dtype="datetime64[ns]"), "category": pd.Series(dtype=str), **{c: pd.Series(dtype=float) for c in MIX_COLUMNS[2:]}}
    )


def _report_rows(day, fd: pd.DataFrame, regime_tv: float, transition: str, pred: float | None, s: DriftSettings) -> list[dict]:
    """One day's drift report: the feature, regime and prediction components and the overall score."""
    fc = feature_component(fd, s)
    score = drift_score(fc, regime_tv, pred, s)
    top = fd[fd.drifted].head(5).feature.tolist()
    return [
        {
            "date": day,
            "component": "features",
            "value": fc,
            "weight": s.weight_features,
            "detail": f"{int(fd.drifted.sum())}/{int(fd.effect.notna().sum())} features drifted (BH KS p < {s.ks_alpha} and "
            f"Wasserstein above its calibrated threshold): {', '.join(top) or 'none'}",
        },
        {
            "date": day,
            "component": "regime",
            "value": regime_tv,
            "weight": s.weight_regime,
            "detail": f"transition {transition} (mix of market states)",
        },
        {
            "date": day,
            "component": "predictions",
            "value": np.nan if pred is None else pred,
            "weight": s.weight_predictions if pred is not None else 0.0,
            "detail": "no champion" if pred is None else "max(TV of the predicted class mix, scaled mean-confidence shift)",
        },
        {
            "date": day,
            "component": "overall",
            "value": score,
            "weight": 1.0,
            "detail": f"retraining threshold {s.score_threshold} held {s.persistence_days} days: "
            f"{'ABOVE' if score >= s.score_threshold else 'below'} today",
        },
    ]


def drift_tables(
    features: pd.DataFrame,
    regimes: pd.DataFrame,
    feature_names: list[str],
    s: DriftSettings,
    date_level: set[str] | None,
    days,
    predictions: tuple | None = None,
    class_names=None,
) -> DriftTables:
    """The drift of each day of ``days`` that has feature rows, from the trailing windows ending that day:
    the one computation the ``drift`` assets store and ``benchmarks/drift_policy.py`` calibrates.

    Windows: the trading days of ``features`` up to the day; current = the last ``current_window``,
    reference = the ``reference_window`` before (fewer at the start of the data: no reference yet
    means no regime shift). ``features`` as for ``feature_drift`` (any row order); ``regimes`` as
    ``compute_regimes`` returns them (date, regime, spx_drawdown, spx_return_20d), measured as the mix
    of ``market_states`` on the same days; ``predictions`` = (dates, class probabilities) of a model's
    rows, measured on the same days, or None (no model: no prediction part).
    """
    f = features.sort_values("date", kind="stable").reset_index(drop=True)
    all_days, first = np.unique(f.date.to_numpy().astype("datetime64[ns]"), return_index=True)  # DuckDB reads [us]
    ends = np.append(first[1:], len(f))
    state = pd.Series(market_states(regimes, s).to_numpy(), index=pd.DatetimeIndex(regimes.date).as_unit("ns"))
    state = state[~state.index.duplicated(keep="last")].reindex(all_days)
    if predictions is not None:
        p_dates, proba = np.asarray(predictions[0], dtype="datetime64[ns]"), np.asarray(predictions[1], float)
    fds, mixes, preds, report, transitions, stats = [], [], [], [], {}, {}
    wanted = np.unique(np.asarray(pd.DatetimeIndex(days), dtype="datetime64[ns]"))
    for k in np.flatnonzero(np.isin(all_days, wanted)):
        day = pd.Timestamp(all_days[k])
        k0 = max(0, k + 1 - s.current_window - s.reference_window)
        n_cur = min(s.current_window, k + 1 - k0)
        fd = feature_drift(f.iloc[first[k0] : ends[k]], feature_names, s, date_level)
        r = state.iloc[k0 : k + 1]
        tv, mix = mix_shift(r.iloc[: len(r) - n_cur], r.iloc[len(r) - n_cur :], list(MARKET_STATES))
        tv = tv if len(r) > n_cur else 0.0  # no reference yet: no regime shift
        transitions[f"{day:%Y-%m-%d}"] = transition = regime_transition(mix)
        pred = None
        if predictions is not None:
            ref = np.isin(p_dates, all_days[k0 : k + 1 - n_cur])
            cur = np.isin(p_dates, all_days[k + 1 - n_cur : k + 1])
            pred, table, conf = prediction_drift(proba[ref], proba[cur], list(class_names))
            stats[f"{day:%Y-%m-%d}"] = {"component": pred, **conf}
            confidence = pd.DataFrame(
                [
                    {
                        "category": CONFIDENCE_ROW,
                        "reference_share": conf["mean_confidence_reference"],
                        "current_share": conf["mean_confidence_current"],
                        "change": conf["confidence_shift"],
                    }
                ]
            )
            preds.append(pd.concat([table, confidence], ignore_index=True).assign(date=day))
        fds.append(fd.assign(date=day))
        mixes.append(mix.assign(date=day))
        report += _report_rows(day, fd, tv, transition, pred, s)
    fdf = (
        pd.concat(fds, ignore_index=True)
        if fds
        else feature_drift(f.iloc[:0], feature_names, s, date_level).assign(date=pd.Series(dtype="datetime64[ns]"))
    )
    rep = (
        pd.DataFrame(report, columns=REPORT_COLUMNS)
        if report
        else pd.DataFrame(
            {
                "date": pd.Series(dtype="datetime64[ns]"),
                "component": pd.Series(dtype=str),
                "value": pd.Series(dtype=float),
                "weight": pd.Series(dtype=float),
                "detail": pd.Series(dtype=str),
            }
        )
    )
    return DriftTables(
        feature_drift=fdf[["date", *FEATURE_DRIFT_COLUMNS]],
        regime_drift=pd.concat(mixes, ignore_index=True)[MIX_COLUMNS] if mixes else _empty_mix(),
        prediction_drift=pd.concat(preds, ignore_index=True)[MIX_COLUMNS] if preds else _empty_mix(),
        report=rep,
        transitions=transitions,
        prediction_stats=stats,
    )


def daily_drift_scores(
    features: pd.DataFrame, regimes: pd.DataFrame, feature_names: list[str], s: DriftSettings, date_level: set[str] | None, days
) -> pd.DataFrame:
    """Per day of ``days`` with feature rows: the drift score without a prediction part (``drift_tables``,
    what production stores when no champion exists), with its parts. Columns: score, features
    (component), regime (TV), n_drifted, n_tested, transition; indexed by date."""
    t = drift_tables(features, regimes, feature_names, s, date_level, days)
    if t.report.empty:
        return pd.DataFrame(columns=["score", "features", "regime", "n_drifted", "n_tested", "transition"])
    by = t.report.pivot(index="date", columns="component", values="value")
    counts = t.feature_drift.groupby("date").agg(n_drifted=("drifted", "sum"), n_tested=("effect", lambda e: int(e.notna().sum())))
    out = pd.DataFrame(
        {
            "score": by["overall"],
            "features": by["features"],
            "regime": by["regime"],
            "n_drifted": counts.n_drifted.astype(int),
            "n_tested": counts.n_tested.astype(int),
        }
    )
    out["transition"] = [t.transitions[f"{d:%Y-%m-%d}"] for d in out.index]
    out.index.name = "date"
    return out
