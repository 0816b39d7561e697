"""From features and labels to a weighted training set, walk-forward folds and trained models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stockml_core.faults import failpoint
from stockml_core.modeling import models
from stockml_core.modeling.evaluation import (
    BASELINES,
    LINEAR_BASELINE,
    MOMENTUM_BASELINE_FEATURES,
    RANK_BASELINES,
    baseline_probabilities,
    linear_scores,
    logistic_momentum_probabilities,
    proba_columns,
    rank_probabilities,
)
from stockml_core.modeling.splits import Fold, purged_walk_forward
from stockml_core.settings import Settings
from stockml_core.storage.matrix_store import feature_array, rows_of

KEY_COLUMNS = ["ticker", "date", "sector", "regime", "source", "label", "past_return", "fwd_return"]


def model_samples(features: pd.DataFrame, labels: pd.DataFrame, regimes: pd.DataFrame, universe: pd.DataFrame) -> pd.DataFrame:
    """Features joined with labels, the date's regime and the ticker's sector (all rows kept).

    The joins run on the keys alone and the columns are added to a shallow copy: the feature columns
    (a gigabyte at 258 tickers x 23 years) are never copied.
    """
    keys = features[["ticker", "date"]]
    df = features.copy(deep=False)
    lab = keys.merge(labels[["ticker", "date", "label", "past_return", "fwd_return"]], on=["ticker", "date"], how="left")
    for col in ("label", "past_return", "fwd_return"):
        df[col] = lab[col].to_numpy()
    df["regime"] = keys[["date"]].merge(regimes[["date", "regime"]], on="date", how="left").regime.fillna("normal").to_numpy()
    df["sector"] = keys.ticker.map(universe.drop_duplicates("ticker").set_index("ticker").gics_sector).to_numpy()
    return df


def trainable_mask(samples: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    """Rows with a label and every feature finite (past their warm-up), column by column (no float64 copy)."""
    ok = samples.label.notna().to_numpy().copy()
    for name in feature_names:
        ok &= np.isfinite(samples[name].to_numpy())
    return ok


def trainable(samples: pd.DataFrame, feature_names: list[str]) -> pd.DataFrame:
    """Rows with a label and every feature finite (past their warm-up)."""
    return samples.loc[trainable_mask(samples, feature_names)]


RECENT_MARGIN_DAYS = 30  # the set's last trainable date may precede the last labelled one by a few days


def recent_cutoff(labels: pd.DataFrame, s: Settings) -> pd.Timestamp:
    """A date before which no row of the recent window can lie (``build_training_set`` decides exactly)."""
    last = pd.Timestamp(labels.date[labels.label.notna()].max())
    return last - pd.DateOffset(days=int(round(s.training.recent_years * 365.25)) + RECENT_MARGIN_DAYS)


def build_training_set(
    samples: pd.DataFrame,
    archive: pd.DataFrame,
    replay: pd.DataFrame | None,
    feature_names: list[str],
    s: Settings,
    all_finite: np.ndarray | None = None,
) -> pd.DataFrame:
    """Recent window + every rare-event sample + error-replay samples, weighted; sorted by (date, ticker).

    ``source`` is recent / archive / replay. Replay samples are rows of the set that the previous
    cycle got confidently wrong: they are re-weighted ``replay_weight`` times, not duplicated, worst
    errors first, capped at ``replay_max_share`` of the set; buffer rows outside the set are ignored.
    ``all_finite`` (per sample: every feature finite) stands in for the feature columns when ``samples``
    holds only the keys (the training_set asset: the features stay in the warehouse until they are stored).
    """
    ok = np.flatnonzero(trainable_mask(samples, feature_names) if all_finite is None else samples.label.notna().to_numpy() & all_finite)
    dates = samples.date.to_numpy()[ok]
    last = dates.max()
    recent = dates > np.datetime64(pd.Timestamp(last) - pd.DateOffset(days=int(round(s.training.recent_years * 365.25))))
    keys = samples[["ticker", "date"]].iloc[ok]
    event = keys.merge(archive[["ticker", "date", "event"]], on=["ticker", "date"], how="left").event.to_numpy()
    keep = recent | pd.notna(event)
    rows = ok[keep]
    order = np.lexsort((samples.ticker.to_numpy()[rows], dates[keep]))  # by (date, ticker): one copy of the rows
    ts = samples.take(rows[order]).reset_index(drop=True)
    ts["event"] = event[keep][order]
    ts["source"] = np.where(recent[keep][order], "recent", "archive")
    ts["weight"] = np.where(recent[keep][order], 1.0, s.training.archive_weight)
    if replay is not None and len(replay):
        cap = int(s.training.replay_max_share * len(ts))
        chosen = replay.nlargest(cap, "error_score")[["ticker", "date"]].assign(replay=True)
        chosen["date"] = pd.to_datetime(chosen.date)
        is_replay = ts[["ticker", "date"]].merge(chosen, on=["ticker", "date"], how="left").replay.eq(True).to_numpy()
        ts.loc[is_replay, "source"] = "replay"
        ts.loc[is_replay, "weight"] = s.training.replay_weight
    ts["label"] = ts.label.astype(int)
    return ts


def positions_of(ts: pd.DataFrame, keys: pd.DataFrame) -> np.ndarray:
    """Positions of ``ts``'s rows whose (ticker, date) is in ``keys``, in ``ts``'s order: a step that needs a few
    rows of a memory-mapped training set copies those rows (``ts.iloc[...]``), not the whole set."""
    wanted = keys[["ticker", "date"]].assign(date=pd.to_datetime(keys["date"])).drop_duplicates()
    found = ts[["ticker", "date"]].reset_index(drop=True).reset_index().merge(wanted, on=["ticker", "date"])
    return found["index"].to_numpy()


def composition(ts: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rows by source, regime, sector and event."""
    return {k: {str(i): int(v) for i, v in ts[k].value_counts().items()} for k in ["source", "regime", "sector", "event"] if k in ts}


def test_span_years(ts: pd.DataFrame, s: Settings) -> float:
    """The walk-forward test span: ``test_years``, shortened on a short history to ``max_test_share`` of
    the trainable span (so the first fold still trains on the rest).

    Raises ``ValueError`` naming the minimum when the trainable span is below ``min_history_years``.
    """
    t = s.training
    span = (ts.date.max() - ts.date.min()).days / 365.25 if len(ts) else 0.0
    if span < t.min_history_years:
        raise ValueError(
            f"the training set spans {span:.2f} years of trainable rows (labelled, every feature past its warm-up of up to "
            f"{_max_lookback()} rows); the walk-forward evaluation needs at least {t.min_history_years:g} years "
            "(TrainingSettings.min_history_years, STOCKML_TRAINING='{\"min_history_years\": ...}'): provide a longer history"
        )
    return min(t.test_years, t.max_test_share * span)


def _max_lookback() -> int:
    from stockml_core.features import MAX_LOOKBACK

    return MAX_LOOKBACK


def folds_for(ts: pd.DataFrame, s: Settings) -> list[Fold]:
    """Purged walk-forward folds over the last ``test_span_years`` of the training set (expanding, or
    sliding over ``train_window_days`` trading days)."""
    last = ts.date.max()
    test_start = last - pd.DateOffset(days=int(round(test_span_years(ts, s) * 365.25)))
    return purged_walk_forward(ts.date, test_start, s.training.n_folds, s.labels.horizon, train_window=s.training.train_window_days)


def fold_of_rows(n: int, folds: list[Fold]) -> np.ndarray:
    out = np.full(n, -1)
    for f in folds:
        out[f.test_idx] = f.fold
    return out


@dataclass
class BaseModelResult:
    """A base model fitted on the whole training set, with its walk-forward OOF probabilities."""

    kind: str
    model: object
    oof: np.ndarray
    folds: list[Fold]


@dataclass
class Candidate:
    """The stacked candidate the ``meta_learner`` step fitted and registered, with its out-of-sample record.

    ``evaluation`` holds every model's out-of-sample probabilities on the same rows (``stack``);
    ``books`` / ``book_table`` the decile books and their summary, ``decay`` the rank IC by horizon,
    ``replay`` the error-replay correction, ``stack_note`` whether the stack beats its parts."""

    version: str
    model: models.StackedModel
    evaluation: pd.DataFrame
    replay: dict[str, float]
    books: dict
    book_table: pd.DataFrame
    stack_note: str
    decay: pd.DataFrame

    @classmethod
    def stored(cls, obj: Candidate | dict) -> Candidate:
        """A stored ``meta_learner`` output as a Candidate (materializations before it was typed are dicts)."""
        return obj if isinstance(obj, cls) else cls(**obj)


def train_base_model(
    kind: str, ts: pd.DataFrame, feature_names: list[str], s: Settings, progress: Callable[[str], None] | None = None
) -> BaseModelResult:
    """Fit ``kind`` on every walk-forward fold (out-of-fold probabilities), then on the whole set.

    ``progress`` receives one line per fit: rows, elapsed seconds and an estimate of the time left.
    """
    X = feature_array(ts, feature_names)  # a stored training set's memory-mapped matrix itself: no copy
    y, w = ts.label.to_numpy(), ts.weight.to_numpy()
    folds = folds_for(ts, s)
    report = models.FitProgress(kind, [len(f.train_idx) for f in folds] + [len(X)], progress)
    oof = models.out_of_fold(kind, X, y, w, folds, s.training, report)
    failpoint("training")
    final = models.FITTERS[kind](X, y, w, s.training)
    report.done(len(folds), len(X))
    return BaseModelResult(kind, final, oof, folds)


def stack(
    ts: pd.DataFrame, rf: BaseModelResult, xgb: BaseModelResult, feature_names: list[str], s: Settings
) -> tuple[models.StackedModel, pd.DataFrame]:
    """Fit the meta-learner on the OOF probabilities; return the bundle and the evaluation frame.

    The evaluation frame holds every model's out-of-sample probabilities on the same rows: the
    folds where the meta-learner itself is out-of-sample (fold 1 on), with the naive baselines.
    """
    fold_row = fold_of_rows(len(ts), rf.folds)
    y = ts.label.to_numpy()
    Z = models.meta_inputs(np.nan_to_num(rf.oof), np.nan_to_num(xgb.oof), ts.regime)
    cand = models.nested_meta_oof(Z, y, fold_row, s.training.seed)
    oof_rows = fold_row >= 0
    meta = models.fit_meta(Z[oof_rows], y[oof_rows], s.training.seed)
    bundle = models.StackedModel(list(feature_names), rf.model, xgb.model, meta)
    ev_mask = fold_row >= 1
    ev = ts.loc[ev_mask, KEY_COLUMNS].reset_index(drop=True).assign(fold=fold_row[ev_mask])
    for name, proba in [("candidate", cand), ("rf", rf.oof), ("xgb", xgb.oof)]:
        ev[proba_columns(name)] = proba[ev_mask]
    momentum = ts[list(MOMENTUM_BASELINE_FEATURES)].to_numpy(dtype="float64")
    for b in BASELINES:
        parts = []
        for f in rf.folds[1:]:
            test = fold_row[ev_mask] == f.fold
            if b == "logistic_momentum":  # fitted on the same purged training rows as the models
                parts.append(logistic_momentum_probabilities(momentum[f.train_idx], y[f.train_idx], momentum[ev_mask][test], s.training.seed))
                continue
            majority = int(pd.Series(y[f.train_idx]).mode().iloc[0])
            parts.append(baseline_probabilities(b, int(test.sum()), majority, ev.past_return[test].to_numpy()))
        ev[proba_columns(b)] = np.vstack(parts)
    ev_dates = ev.date.to_numpy()
    for b, (feature, sign) in RANK_BASELINES.items():  # each day's names ranked by one feature: nothing fitted
        ev[proba_columns(b)] = rank_probabilities(ev_dates, sign * ts[feature].to_numpy()[ev_mask])
    X = feature_array(ts, feature_names)
    linear = np.full(int(ev_mask.sum()), np.nan)
    ev_rows = np.flatnonzero(ev_mask)
    for f in rf.folds[1:]:  # fitted on the same purged training rows as the models
        test = fold_row[ev_mask] == f.fold
        linear[test] = linear_scores(
            rows_of(X, f.train_idx), ts.date.to_numpy()[f.train_idx], ts.fwd_return.to_numpy()[f.train_idx], rows_of(X, ev_rows[test])
        )
    ev[proba_columns(LINEAR_BASELINE)] = rank_probabilities(ev_dates, linear)
    return bundle, ev


def replay_correction(model: models.StackedModel, ts: pd.DataFrame) -> dict[str, float]:
    """How many of the replayed mistakes (``source == "replay"``) the trained candidate now gets right.

    In-sample by nature: replaying a mistake means training on it (up-weighted). Before replay the
    repeat-error rate of these samples is 1.0 by construction. ``replay_n`` 0 without a buffer.
    """
    rows = ts[ts.source == "replay"]
    if not len(rows):
        return {"replay_n": 0.0, "repeat_error_rate": float("nan")}
    pred = model.predict_proba(rows).argmax(axis=1)
    return {"replay_n": float(len(rows)), "repeat_error_rate": float((pred != rows.label.to_numpy().astype(int)).mean())}
