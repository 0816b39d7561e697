"""Tests of stockml_core.modeling.evaluation: metrics, information coefficients, baselines and the validation report."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from stockml_core.modeling.evaluation import (
    BASELINES,
    PROBA_COLUMNS,
    baseline_probabilities,
    classification_metrics,
    comparison_table,
    expected_calibration_error,
    hac_t,
    headline,
    information_coefficients,
    linear_scores,
    logistic_momentum_probabilities,
    overlap_t,
    rank_probabilities,
    reliability_table,
    validation_report,
)

Y = np.tile([0, 1, 2], 20)


# ------------------------------------------------------------------------------------ classification_metrics


def test_perfect_predictions_score_one() -> None:
    m = classification_metrics(Y, np.eye(3)[Y])
    assert m["n"] == len(Y)
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["auc_ovr"] == 1.0
    assert m["log_loss"] < 1e-4 and m["brier"] < 1e-8


def test_uniform_probabilities_are_uninformative() -> None:
    m = classification_metrics(Y, np.full((len(Y), 3), 1 / 3))
    assert m["auc_ovr"] == pytest.approx(0.5)
    assert m["log_loss"] == pytest.approx(math.log(3))
    assert m["brier"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(1 / 3)  # argmax ties resolve to class 0


def test_confidently_wrong_predictions_score_badly() -> None:
    m = classification_metrics(Y, np.eye(3)[(Y + 1) % 3])
    assert m["accuracy"] == 0.0
    assert m["log_loss"] > 10 and m["brier"] == pytest.approx(2.0, abs=1e-4)


def test_metrics_with_a_single_class_have_no_auc() -> None:
    y = np.full(10, 2)
    m = classification_metrics(y, np.eye(3)[y])
    assert m["accuracy"] == 1.0
    assert math.isnan(m["auc_ovr"]) and math.isnan(m["balanced_accuracy"])


@pytest.mark.parametrize("case", ["balanced", "ties", "missing_class", "two_rows", "predicts_absent_class"])
def test_metrics_equal_scikit_learn(case: str) -> None:
    """The numpy metrics are scikit-learn's definitions: checked on random data, ties and small groups."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss, roc_auc_score

    rng = np.random.default_rng(7)
    n = {"two_rows": 2}.get(case, 400)
    y = rng.integers(0, 3, n)
    proba = rng.dirichlet([1, 1, 1], n)
    if case == "ties":
        proba = np.round(proba, 1) + 1e-9
        proba /= proba.sum(axis=1, keepdims=True)
    if case == "missing_class":
        y[y == 1] = 2
    if case == "predicts_absent_class":
        y[y == 0] = 1
        proba[:, 0] += 2.0
        proba /= proba.sum(axis=1, keepdims=True)
    got = classification_metrics(y, proba)
    clipped = np.clip(proba, 1e-6, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    pred = clipped.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", labels=[0, 1, 2], zero_division=0))
    assert got["log_loss"] == pytest.approx(log_loss(y, clipped, labels=[0, 1, 2]))
    if len(np.unique(y)) > 1:
        with warnings.catch_warnings():  # scikit-learn warns when a predicted class is absent from y
            warnings.simplefilter("ignore")
            assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    if len(np.unique(y)) == 3:
        assert got["auc_ovr"] == pytest.approx(roc_auc_score(y, clipped, multi_class="ovr", labels=[0, 1, 2]))
    else:
        assert math.isnan(got["auc_ovr"])
    d = (y == 0) | (y == 2)
    if (y[d] == 2).any() and (y[d] == 0).any():
        assert got["auc_direction"] == pytest.approx(roc_auc_score(y[d] == 2, clipped[d, 2] - clipped[d, 0]))
    else:
        assert math.isnan(got["auc_direction"])


def test_metrics_of_no_rows() -> None:
    assert classification_metrics(np.array([]), np.empty((0, 3))) == {"n": 0.0}


# ------------------------------------------------------------------------------------ information coefficients


def _panel(n_dates: int, n_tickers: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=n_dates)
    frame = pd.DataFrame({"date": np.repeat(dates, n_tickers), "ticker": np.tile([f"T{i}" for i in range(n_tickers)], n_dates)})
    return frame.assign(fwd_return=rng.normal(0, 0.02, len(frame)))


def test_ic_of_the_forward_return_itself_is_one() -> None:
    p = _panel(50, 10, seed=1)
    ic = information_coefficients(p.date, p.fwd_return.to_numpy(), p.fwd_return.to_numpy())
    assert ic["ic"] == pytest.approx(1.0) and ic["rank_ic"] == pytest.approx(1.0)


def test_ic_of_a_monotone_transform_has_rank_ic_one() -> None:
    p = _panel(50, 10, seed=2)
    ic = information_coefficients(p.date, np.exp(50 * p.fwd_return.to_numpy()), p.fwd_return.to_numpy())
    assert ic["rank_ic"] == pytest.approx(1.0)
    assert 0.5 < ic["ic"] < 1.0


def test_ic_of_a_noisy_signal_is_positive() -> None:
    p = _panel(100, 20, seed=3)
    noise = np.random.default_rng(4).normal(0, 0.02, len(p))
    ic = information_coefficients(p.date, p.fwd_return.to_numpy() + noise, p.fwd_return.to_numpy())
    assert 0.5 < ic["ic"] < 0.9 and ic["icir"] > 1


def test_ic_of_noise_is_near_zero() -> None:
    p = _panel(250, 30, seed=5)
    noise = np.random.default_rng(6).normal(size=len(p))
    ic = information_coefficients(p.date, noise, p.fwd_return.to_numpy())
    assert abs(ic["ic"]) < 0.03 and abs(ic["rank_ic"]) < 0.03


def test_ic_ignores_dates_with_fewer_than_three_names() -> None:
    p = _panel(5, 2, seed=7)
    ic = information_coefficients(p.date, p.fwd_return.to_numpy(), p.fwd_return.to_numpy())
    assert ic.pop("days") == 0 and all(math.isnan(v) for v in ic.values())


def test_hac_t_by_hand() -> None:
    x = np.array([0.3, -0.1, 0.2, 0.5, 0.0, 0.1])
    d = x - x.mean()
    n = len(x)
    g1, g2 = (d[1:] @ d[:-1]) / n, (d[2:] @ d[:-2]) / n
    assert hac_t(x, 0) == pytest.approx(x.mean() / np.sqrt(d @ d / n / n))  # no lags: the plain t
    assert hac_t(x, 2) == pytest.approx(x.mean() / np.sqrt((d @ d / n + 2 * (2 / 3) * g1 + 2 * (1 / 3) * g2) / n))
    y = np.array([0.3, 0.2, 0.4, 0.1, -0.1, 0.0, 0.2, 0.3])  # positively autocorrelated
    e = y - y.mean()
    hh = (e @ e + 2 * (e[1:] @ e[:-1]) + 2 * (e[2:] @ e[:-2])) / len(y)
    assert hh > 0 and hac_t(y, 2, "uniform") == pytest.approx(y.mean() / np.sqrt(hh / len(y)))
    assert math.isnan(hac_t(np.array([0.1]), 4)) and math.isnan(hac_t(np.zeros(10), 4))
    # A Hansen-Hodrick variance that is not positive falls back to Newey-West on 2(h - 1) lags.
    zigzag = np.tile([1.0, -1.0], 50) + 0.01  # variance 1, first autocovariance -1: 1 - 2 < 0 at h = 2
    assert math.isnan(hac_t(zigzag, 1, "uniform"))
    assert overlap_t(zigzag, 2) == hac_t(zigzag, 2, "bartlett") and np.isfinite(overlap_t(zigzag, 2))
    assert overlap_t(y, 3) == hac_t(y, 2, "uniform")


def test_overlap_t_is_calibrated_on_overlapping_returns_where_the_plain_t_is_not() -> None:
    # Daily ICs of 5-day returns with no skill: each day's IC shares 4 of its 5 days with the next (MA(4)).
    rng = np.random.default_rng(11)
    shocks = rng.normal(size=(2000, 1004))
    ics = np.stack([shocks[:, k : k + 1000] for k in range(5)]).sum(axis=0)
    plain = np.array([hac_t(row, 0) for row in ics])
    nw = np.array([hac_t(row, 4) for row in ics])
    ours = np.array([overlap_t(row, 5) for row in ics])
    assert (np.abs(plain) > 1.96).mean() > 0.3  # the plain t "finds" skill in a third of the trials
    assert (np.abs(nw) > 1.96).mean() > 0.08  # Newey-West on h - 1 lags still twice too often
    assert 0.03 < (np.abs(ours) > 1.96).mean() < 0.065  # about as often as it should (5%)


def test_ic_t_statistic_and_days() -> None:
    p = _panel(250, 30, seed=5)
    skill = p.fwd_return.to_numpy() + np.random.default_rng(8).normal(0, 0.1, len(p))
    ic = information_coefficients(p.date, skill, p.fwd_return.to_numpy(), horizon=1)
    assert ic["days"] == 250 and ic["rank_ic_t"] > 5 and ic["ic_t"] > 5 and ic["rank_icir"] > 0
    noise = information_coefficients(p.date, np.random.default_rng(6).normal(size=len(p)), p.fwd_return.to_numpy())
    assert abs(noise["rank_ic_t"]) < 3


# ------------------------------------------------------------------------------------ baselines


def test_majority_baseline_predicts_the_majority_class() -> None:
    np.testing.assert_array_equal(baseline_probabilities("majority", 4, 1), np.tile([0.0, 1.0, 0.0], (4, 1)))


def test_always_up_baseline_predicts_up() -> None:
    np.testing.assert_array_equal(baseline_probabilities("always_up", 3, 0), np.tile([0.0, 0.0, 1.0], (3, 1)))


def test_previous_direction_baseline_follows_the_past_return_sign() -> None:
    proba = baseline_probabilities("previous_direction", 4, 1, np.array([0.02, -0.01, 0.0, -0.3]))
    np.testing.assert_array_equal(proba.argmax(axis=1), [2, 0, 2, 0])
    np.testing.assert_array_equal(proba.sum(axis=1), np.ones(4))


def test_unknown_baseline_raises() -> None:
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_probabilities("coin_flip", 3, 0)


# ------------------------------------------------------------------------------------ validation report


SECTORS = {"AAA": "Energy", "BBB": "Energy", "CCC": "Utilities", "DDD": "Utilities", "EEE": "Financials", "FFF": "Financials"}


@pytest.fixture(scope="module")
def oof() -> pd.DataFrame:
    """A frame shaped like training.stack's: the candidate is right except on half of the Financials rows."""
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2016-01-04", periods=60)
    tickers = list(SECTORS)
    df = pd.DataFrame({"date": np.repeat(dates, len(tickers)), "ticker": np.tile(tickers, len(dates))})
    df["sector"] = df.ticker.map(SECTORS)
    day = np.repeat(np.arange(len(dates)), len(tickers))
    df["regime"] = np.where(day < 15, "crash", np.where(day < 30, "high_volatility", "normal"))
    df["fold"] = 1 + day // 20
    df["label"] = rng.choice(3, size=len(df), p=[0.3, 0.3, 0.4])
    df["past_return"] = rng.normal(0, 0.03, len(df))
    df["fwd_return"] = (df.label - 1) * 0.02 + rng.normal(0, 0.01, len(df))
    pred = df.label.to_numpy().copy()
    flip = (df.sector == "Financials").to_numpy() & (np.arange(len(df)) % 2 == 0)
    pred[flip] = (pred[flip] + 1) % 3
    proba = np.full((len(df), 3), 0.2)
    proba[np.arange(len(df)), pred] = 0.6
    df[[f"candidate__{c}" for c in PROBA_COLUMNS]] = proba
    for b in BASELINES:
        if b == "logistic_momentum":  # fitted on the first half, scored on every row (a shape fixture)
            X = df[["past_return"]].to_numpy()
            proba_b = logistic_momentum_probabilities(X[: len(df) // 2], df.label[: len(df) // 2], X)
        else:
            proba_b = baseline_probabilities(b, len(df), 2, df.past_return.to_numpy())
        df[[f"{b}__{c}" for c in PROBA_COLUMNS]] = proba_b
    return df


@pytest.fixture(scope="module")
def report(oof) -> pd.DataFrame:
    return validation_report(oof)


def test_report_is_long_with_every_scope_for_every_model(report, oof) -> None:
    assert list(report.columns) == ["scope", "group", "model", "metric", "value"]
    assert list(dict.fromkeys(report.model)) == ["candidate", "always_up", "logistic_momentum", "majority", "previous_direction"]
    for model in report.model.unique():
        groups = report[report.model == model].groupby("scope").group.unique()
        assert set(groups["overall"]) == {"all"}
        assert set(groups["regime"]) == {"crash", "high_volatility", "normal"}
        assert set(groups["sector"]) == set(SECTORS.values())
        assert set(groups["symbol"]) == set(SECTORS)
        assert set(groups["fold"]) == {"1", "2", "3"}


def test_report_ic_is_in_every_scope_but_symbol(report, oof) -> None:
    assert set(report[report.metric.isin(["ic", "rank_ic", "icir"])].scope) == {"overall", "regime", "sector", "fold", "year"}
    # The sector IC is the daily cross-sectional IC among that sector's names only.
    energy = oof[oof.sector == "Energy"]
    score = energy.candidate__p_up - energy.candidate__p_down
    expected = information_coefficients(energy.date, score.to_numpy(), energy.fwd_return.to_numpy())
    got = report[(report.scope == "sector") & (report.group == "Energy") & (report.model == "candidate")]
    # Energy has two names: fewer than three a day, so no IC (the rule is the same as overall).
    assert math.isnan(expected["ic"]) and math.isnan(got[got.metric == "ic"].value.iloc[0])
    regime = oof[oof.regime == "normal"]
    score = regime.candidate__p_up - regime.candidate__p_down
    expected = information_coefficients(regime.date, score.to_numpy(), regime.fwd_return.to_numpy())
    got = report[(report.scope == "regime") & (report.group == "normal") & (report.model == "candidate")]
    assert got[got.metric == "rank_ic"].value.iloc[0] == pytest.approx(expected["rank_ic"])


def test_headline_reads_the_candidate_metrics(report, oof) -> None:
    h = headline(report)
    correct = oof[[f"candidate__{c}" for c in PROBA_COLUMNS]].to_numpy().argmax(axis=1) == oof.label.to_numpy()
    assert h["n"] == len(oof)
    assert h["accuracy"] == pytest.approx(correct.mean())
    assert h["crash_accuracy"] == pytest.approx(correct[(oof.regime == "crash").to_numpy()].mean())
    assert h["ic"] > 0.5 and h["rank_ic"] > 0.5
    assert h["auc_ovr"] > 0.8


def test_headline_names_the_worst_sector(report, oof) -> None:
    h = headline(report)
    assert h["worst_sector"] == "Financials"
    assert h["worst_sector_accuracy"] == pytest.approx(0.5)


def test_headline_reads_the_baselines(report, oof) -> None:
    h = headline(report)
    label = oof.label.to_numpy()
    assert h["always_up_accuracy"] == pytest.approx((label == 2).mean())
    assert h["majority_accuracy"] == pytest.approx((label == 2).mean())  # the fixture's majority class is up
    prev = np.where(oof.past_return >= 0, 2, 0)
    assert h["previous_direction_accuracy"] == pytest.approx((prev == label).mean())
    crash = (oof.regime == "crash").to_numpy()
    assert h["previous_direction_crash_accuracy"] == pytest.approx((prev == label)[crash].mean())
    assert h["always_up_auc_ovr"] == pytest.approx(0.5)


def test_headline_without_crash_rows_has_nan_crash_accuracy(oof) -> None:
    h = headline(validation_report(oof[oof.regime != "crash"]))
    assert math.isnan(h["crash_accuracy"])
    assert all(math.isnan(h[f"{b}_crash_accuracy"]) for b in BASELINES)


def test_comparison_table_lists_the_candidate_first(report) -> None:
    table = comparison_table(report)
    assert table.model.iloc[0] == "candidate"
    assert set(table.model) == {"candidate", *BASELINES}
    assert {"accuracy", "auc_ovr", "ic", "n"} <= set(table.columns)


# ------------------------------------------------------------------------------------ calibration, logistic baseline


def test_logistic_momentum_baseline_learns_a_momentum_rule_out_of_sample() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 5))
    y = np.where(X[:, 0] > 0.4, 2, np.where(X[:, 0] < -0.4, 0, 1))
    proba = logistic_momentum_probabilities(X[:2000], y[:2000], X[2000:])
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == y[2000:]).mean() > 0.85
    # A class missing from the training rows gets probability 0, not a shifted column.
    two = logistic_momentum_probabilities(X[:2000][y[:2000] != 1], y[:2000][y[:2000] != 1], X[2000:])
    assert (two[:, 1] == 0).all() and np.allclose(two.sum(axis=1), 1.0)


def test_calibration_error_and_reliability_table() -> None:
    rng = np.random.default_rng(4)
    p = rng.dirichlet([1, 1, 1], size=20000)
    y = np.array([rng.choice(3, p=row) for row in p])  # labels drawn from the probabilities: calibrated
    assert expected_calibration_error(y, p) < 0.02
    overconfident = np.eye(3)[p.argmax(axis=1)] * 0.98 + 0.01
    assert expected_calibration_error(y, overconfident) > 0.2
    table = reliability_table(y, p)
    assert set(table["class"]) == {"down", "flat", "up"} and table.rows.sum() == 3 * len(y)
    full = table[table.rows > 500]
    assert np.allclose(full.predicted, full.observed, atol=0.03)


# ------------------------------------------------------------------------------------ ranking baselines


def test_rank_probabilities_carry_the_days_ranking() -> None:
    p = _panel(40, 15, seed=21)
    score = p.fwd_return.to_numpy() * 3 + 1.0  # a monotone transform of the truth
    proba = rank_probabilities(p.date.to_numpy(), score)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba >= 0).all() and (proba[:, 1] == 1 / 3).all()
    ic = information_coefficients(p.date, proba[:, 2] - proba[:, 0], p.fwd_return.to_numpy())
    assert ic["rank_ic"] == pytest.approx(1.0)
    # A missing score is the day's middle: neither long nor short.
    score[:5] = np.nan
    assert np.allclose(rank_probabilities(p.date.to_numpy(), score)[:5], [1 / 3, 1 / 3, 1 / 3])


def test_linear_baseline_is_scikit_learns_ridge_on_mean_imputed_standardized_features() -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    train, test = _panel(30, 20, seed=41), _panel(10, 20, seed=42)
    X_train = rng.normal(size=(len(train), 6)).astype("float32") * [1, 2, 3, 4, 5, 6]
    X_train[::5, 1] = np.nan
    X_train[:, 5] = 3.0  # a constant column
    X_test = rng.normal(size=(len(test), 6)).astype("float32")
    X_test[::3, 2] = np.nan
    fwd = train.fwd_return.to_numpy() + 0.01 * X_train[:, 0]
    ours = linear_scores(X_train, train.date.to_numpy(), fwd, X_test, alpha=2.0, chunk=64)
    y = pd.Series(fwd).groupby(train.date.to_numpy()).rank(pct=True).to_numpy()
    ref = make_pipeline(SimpleImputer(strategy="mean"), StandardScaler(), Ridge(alpha=2.0)).fit(X_train, y - y.mean())
    np.testing.assert_allclose(ours, ref.predict(X_test) - ref.predict(X_test).mean() + ours.mean(), atol=1e-5)
    np.testing.assert_allclose(np.corrcoef(ours, ref.predict(X_test))[0, 1], 1.0, atol=1e-9)


def test_linear_baseline_learns_a_planted_signal_out_of_sample() -> None:
    rng = np.random.default_rng(3)
    train, test = _panel(200, 30, seed=31), _panel(60, 30, seed=32)
    X_train, X_test = rng.normal(size=(len(train), 8)).astype("float32"), rng.normal(size=(len(test), 8)).astype("float32")
    X_train[::7, 3] = np.nan  # missing inputs take the training median
    fwd = lambda X, n: 0.01 * np.nan_to_num(X[:, 2]) + rng.normal(0, 0.02, n)  # noqa: E731
    score = linear_scores(X_train, train.date.to_numpy(), fwd(X_train, len(train)), X_test)
    ic = information_coefficients(test.date, score, fwd(X_test, len(test)), horizon=1)
    assert ic["rank_ic"] > 0.3 and ic["rank_ic_t"] > 5


def test_ic_decay_measures_each_horizon_against_its_own_forward_return() -> None:
    from stockml_core.modeling.evaluation import ic_decay

    rng = np.random.default_rng(1)
    dates = pd.bdate_range("2015-01-01", periods=120)
    names = [f"T{i:02d}" for i in range(40)]
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (len(dates), len(names))), axis=0)), index=dates, columns=names)
    closes = close.stack().rename("close").rename_axis(["date", "ticker"]).reset_index()
    r10 = (close.shift(-10) / close - 1).stack().rename("r10").rename_axis(["date", "ticker"]).reset_index()
    ev = r10[r10.date <= dates[90]].assign(m__p_up=lambda d: 0.5 + d.r10, m__p_down=lambda d: 0.5 - d.r10).drop(columns="r10")
    decay = ic_decay(ev, closes, ["m", "absent"]).set_index("horizon")
    assert list(decay.index) == [1, 5, 10, 20] and set(decay.model) == {"m"}
    assert decay.rank_ic[10] == pytest.approx(1.0)  # the score is the 10-day return itself
    assert decay.rank_ic[1] < decay.rank_ic[5] < decay.rank_ic[10] and decay.rank_ic[20] < decay.rank_ic[10]


def test_the_model_column_convention_has_one_home() -> None:
    """<model>__p_down/p_flat/p_up: spelled by proba_columns, found by models_in, read by model_probabilities/model_score."""
    from stockml_core.modeling.evaluation import model_probabilities, model_score, models_in, proba_columns

    assert proba_columns("rf") == ["rf__p_down", "rf__p_flat", "rf__p_up"]
    frame = pd.DataFrame({"date": [1, 2], **{c: [0.2, 0.5] for c in proba_columns("rf")}, "xgb__p_up": [0.1, 0.2]})
    frame[proba_columns("candidate")] = [[0.1, 0.3, 0.6], [0.5, 0.3, 0.2]]
    assert models_in(frame) == ["rf", "candidate"]  # xgb has no down column: not scored here
    assert model_probabilities(frame, "candidate").shape == (2, 3)
    np.testing.assert_allclose(model_score(frame, "candidate"), [0.5, -0.3])
