"""Parity of our features with the ``ta`` library (the reference implementation the registry names).

For every registry feature with a ``ta`` expression, ``benchmarks.ta_reference.TA_REFERENCE`` evaluates
that expression with ``ta`` on one ticker's rows; our ``compute_features`` value (float32) must equal it
within ``PARITY_RTOL`` / ``PARITY_ATOL`` on every row at or after the feature's warm-up where:

* ``ta``'s value is finite (``ta`` gives NaN or inf on flat windows and zero volume, where we give the
  documented fill: 0.5, 50, 0, 1, ...; those rows are checked to be finite on our side instead), and
* no documented convention of the spec's ``note`` applies: RSI rows where ``ta``'s down-average is
  exactly 0 (``ta`` then says 100 even with no up move either), and for ``stoch_rsi_14`` windows
  containing such a row or whose RSI range is rounding noise (prices flat for 14 rows).

The real tickers below run over their full histories (one ``compute_features`` call for all of them,
so ticker boundaries are exercised too); a synthetic ticker adds the quirks the sample lacks (a flat
stretch with zero volume, a history that starts flat).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ta")

from benchmarks.ta_reference import TA_REFERENCE, ta_all  # noqa: E402
from stockml_core.features import compute_features  # noqa: E402
from stockml_core.features.registry import FEATURE_REGISTRY, MAX_LOOKBACK, PARITY_ATOL, PARITY_RTOL, feature_spec  # noqa: E402
from stockml_core.market.data import load_market, load_prices  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data" / "sample"
# KO, XOM, JPM, IBM: full 1990-2017 histories. PSA is listed in 2005 (3,201 rows), SPG in 1993; AEP has
# the most unchanged closes of the sample; all but T and PSA have a zero-volume day.
TICKERS = ["KO", "XOM", "JPM", "IBM", "PSA", "SPG", "AEP", "T"]
TA_FEATURES = [s.name for s in FEATURE_REGISTRY if s.ta]
RSI_FLAT = 1e-9  # RSI points: a 14-row RSI range below this is rounding noise (kernels._RSI_FLAT)
MIN_COMPARED = 0.95  # share of a real ticker's post-warm-up rows that must actually be compared


def test_reference_covers_every_ta_feature() -> None:
    assert set(TA_REFERENCE) == set(TA_FEATURES)
    assert len(TA_FEATURES) >= 60


def test_float32_rounding_fits_the_tolerance() -> None:
    # Our output is float32 (relative rounding 2**-24 ~ 6e-8); the tolerance must absorb that.
    assert PARITY_RTOL >= 4 * 2.0**-24
    assert PARITY_ATOL >= 0


# ------------------------------------------------------------------------------------- helpers


def _ta_down_average(close: pd.Series, window: int) -> np.ndarray:
    """``ta.momentum.RSIIndicator``'s down-average (Wilder EWM of the down moves), as ta computes it."""
    diff = close.diff(1)
    down = -diff.where(diff < 0, 0.0)
    return down.ewm(alpha=1 / window, min_periods=window, adjust=False).mean().to_numpy()


def _excluded(name: str, one: pd.DataFrame) -> np.ndarray:
    """Rows where the spec's note documents a deliberate difference from ta (beyond ta's NaN)."""
    close = one["close"].astype(np.float64).reset_index(drop=True)
    if name.startswith("rsi_"):
        return _ta_down_average(close, int(name.split("_")[1])) == 0
    if name == "stoch_rsi_14":
        zero_down = pd.Series((_ta_down_average(close, 14) == 0).astype(float)).rolling(14, min_periods=1).max() > 0
        rsi = TA_REFERENCE["rsi_14"](one)
        flat = (rsi.rolling(14).max() - rsi.rolling(14).min()) <= RSI_FLAT
        return (zero_down | flat).to_numpy()
    return np.zeros(len(one), dtype=bool)


def _check(name: str, ticker: str, one: pd.DataFrame, ours: pd.Series, ref: pd.Series) -> tuple[int, list[str]]:
    """(rows compared, problems) of feature ``name`` on one ticker."""
    lookback = feature_spec(name).lookback
    x = ours.to_numpy(dtype=np.float64)
    y = ref.to_numpy(dtype=np.float64)
    after = np.arange(len(x)) >= lookback
    problems = []
    not_finite = after & ~np.isfinite(x)
    if not_finite.any():  # ta's NaN rows included: there we must give the documented fill
        problems.append(f"{ticker}: {int(not_finite.sum())} non-finite values after warm-up (first row {np.flatnonzero(not_finite)[0]})")
    compared = after & np.isfinite(y) & ~_excluded(name, one)
    with np.errstate(invalid="ignore"):
        bad = compared & ~(np.abs(x - y) <= PARITY_ATOL + PARITY_RTOL * np.abs(y))
    if bad.any():
        rows = np.flatnonzero(bad)
        worst = rows[np.argmax(np.abs(x[rows] - y[rows]))]
        problems.append(
            f"{ticker}: {len(rows)} of {int(compared.sum())} rows differ; first row {rows[0]} "
            f"({pd.Timestamp(one['date'].iloc[rows[0]]):%Y-%m-%d}): ours {x[rows[0]]:.9g} ta {y[rows[0]]:.9g}; "
            f"worst row {worst}: ours {x[worst]:.9g} ta {y[worst]:.9g}"
        )
    return int(compared.sum()), problems


# ----------------------------------------------------------------------------------- real sample


@pytest.fixture(scope="module")
def real() -> dict[str, tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.Series]]]:
    """ticker -> (its price rows, our features, ta's values) over the ticker's full history."""
    prices, _ = load_prices(DATA, tickers=tuple(TICKERS))
    market, _ = load_market(DATA)
    ours = compute_features(prices, market)
    out = {}
    for ticker in TICKERS:
        one = prices[prices["ticker"] == ticker].reset_index(drop=True)
        mine = ours[ours["ticker"] == ticker].reset_index(drop=True)
        assert (mine["date"].to_numpy() == one["date"].to_numpy()).all()
        out[ticker] = (one, mine, ta_all(one))
    return out


@pytest.mark.parametrize("name", TA_FEATURES)
def test_feature_matches_ta_on_real_tickers(real, name: str) -> None:
    problems = []
    for ticker, (one, ours, ref) in real.items():
        compared, issues = _check(name, ticker, one, ours[name], ref[name])
        problems += issues
        post_warmup = len(one) - feature_spec(name).lookback
        if compared < MIN_COMPARED * post_warmup:  # the exclusions must not make the check vacuous
            problems.append(f"{ticker}: only {compared} of {post_warmup} rows after warm-up compared")
    assert not problems, f"{name} vs ta ({feature_spec(name).ta}), rtol {PARITY_RTOL} atol {PARITY_ATOL}:\n" + "\n".join(problems)


def test_reference_functions_agree_with_ta_all(real) -> None:
    one, _, ref = real["PSA"]
    for name in ("rsi_14", "adx_14", "psar_up", "keltner_pct_20", "obv_change_20"):
        np.testing.assert_array_equal(TA_REFERENCE[name](one).to_numpy(), ref[name].to_numpy())


# ---------------------------------------------------------------------------------- quirky ticker


def _walk(rng: np.random.Generator, n: int, start: float) -> list[np.ndarray]:
    close = start * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
    open_ = close * np.exp(rng.normal(0, 0.005, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.008, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.008, n)))
    return [open_, high, low, close, rng.integers(100_000, 1_000_000, n).astype(np.float64)]


def _quirky_ticker(seed: int, flat_start: bool) -> pd.DataFrame:
    """A random walk with a 60-row flat, zero-volume stretch, or one that starts flat for longer than any warm-up."""
    rng = np.random.default_rng(seed)
    if flat_start:
        n0 = MAX_LOOKBACK + 40
        parts = [[np.full(n0, 20.0)] * 4 + [np.full(n0, 1e5)], _walk(rng, 300, 20.0)]
    else:
        first = _walk(rng, 400, 50.0)
        flat = np.full(60, first[3][-1])
        parts = [first, [flat] * 4 + [np.zeros(60)], _walk(rng, 300, float(flat[0]))]
    cols = {c: np.concatenate([p[i] for p in parts]) for i, c in enumerate(["open", "high", "low", "close", "volume"])}
    frame = pd.DataFrame(cols)
    frame.insert(0, "date", pd.bdate_range("2000-01-03", periods=len(frame)))
    frame.insert(0, "ticker", "FLATSTART" if flat_start else "FLATMID")
    return frame


@pytest.fixture(scope="module")
def quirky() -> dict[str, tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.Series]]]:
    out = {}
    for seed, flat_start in ((0, False), (1, True)):
        one = _quirky_ticker(seed, flat_start)
        out[one["ticker"].iloc[0]] = (one, compute_features(one), ta_all(one))
    return out


def test_documented_conventions_on_flat_stretches(quirky) -> None:
    problems = []
    for name in TA_FEATURES:
        for ticker, (one, ours, ref) in quirky.items():
            problems += [f"{name} {p}" for p in _check(name, ticker, one, ours[name], ref[name])[1]]
    assert not problems, "\n".join(problems)
    # The fills the notes document, where ta has no value or another convention.
    one, ours, ref = quirky["FLATMID"]
    flat = slice(430, 460)  # rows 400-459 are flat with zero volume; 30 rows in, every 20-row window is flat
    assert ref["bb_pct_b_20"][flat].isna().all() and (ours["bb_pct_b_20"][flat] == 0.5).all()
    assert ref["stoch_k_14"][flat].isna().all() and (ours["stoch_k_14"][flat] == 50).all()
    assert (ours["stoch_rsi_14"][flat] == 0.5).all()  # ta: rounding noise (0, 1) or NaN
    assert ref["cmf_20"][flat].isna().all() and (ours["cmf_20"][flat] == 0).all()
    one, ours, ref = quirky["FLATSTART"]
    start = feature_spec("rsi_14").lookback
    assert (ref["rsi_14"][start:MAX_LOOKBACK] == 100).all() and (ours["rsi_14"][start:MAX_LOOKBACK] == 50).all()
