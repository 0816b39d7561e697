"""The ``ta`` library's value of every feature that has a ``ta`` equivalent in the registry.

``TA_REFERENCE[name](one_ticker)`` evaluates the registry's ``ta`` expression of feature ``name`` on one
ticker's rows (``open, high, low, close, volume`` as float64 columns with a RangeIndex, sorted by
date) and returns it in the feature's units (e.g. ``ROCIndicator(close, 5).roc() / 100``).
``ta_all(one_ticker)`` computes all of them at once, building each ``ta`` indicator object once (as a
``ta`` user would), for the benchmark.

``ta`` (0.11) is a development dependency: it is imported when this module is, and only the parity
test and the benchmark import it.
"""

from collections.abc import Callable

import numpy as np
import pandas as pd
from ta import momentum, trend, volatility, volume

from stockml_core.features.registry import FEATURE_REGISTRY


class _Ticker:
    """One ticker's columns plus the ``ta`` indicator objects already built on them."""

    def __init__(self, df: pd.DataFrame):
        self.open = df["open"].astype(np.float64).reset_index(drop=True)
        self.high = df["high"].astype(np.float64).reset_index(drop=True)
        self.low = df["low"].astype(np.float64).reset_index(drop=True)
        self.close = df["close"].astype(np.float64).reset_index(drop=True)
        self.volume = df["volume"].astype(np.float64).reset_index(drop=True)
        self._memo: dict[tuple, object] = {}

    def get(self, key: tuple, build: Callable[[], object]):
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    # the indicator objects shared by several features
    def bollinger(self):
        return self.get(("bb",), lambda: volatility.BollingerBands(self.close, window=20, window_dev=2))

    def keltner(self):
        return self.get(("kc",), lambda: volatility.KeltnerChannel(self.high, self.low, self.close, window=20, window_atr=10, original_version=False))

    def stoch(self):
        return self.get(("stoch",), lambda: momentum.StochasticOscillator(self.high, self.low, self.close, window=14, smooth_window=3))

    def macd(self):
        return self.get(("macd",), lambda: trend.MACD(self.close))

    def adx(self):
        return self.get(("adx",), lambda: trend.ADXIndicator(self.high, self.low, self.close, window=14))

    def psar(self):
        return self.get(("psar",), lambda: trend.PSARIndicator(self.high, self.low, self.close))

    def ichimoku(self):
        return self.get(("ichimoku",), lambda: trend.IchimokuIndicator(self.high, self.low, window1=9, window2=26, window3=52, visual=False))

    def aroon(self):
        return self.get(("aroon",), lambda: trend.AroonIndicator(self.high, self.low, window=25))

    def vortex(self):
        return self.get(("vortex",), lambda: trend.VortexIndicator(self.high, self.low, self.close, window=14))

    def obv(self):
        return self.get(("obv",), lambda: volume.OnBalanceVolumeIndicator(self.close, self.volume).on_balance_volume())


def _references() -> dict[str, Callable[[_Ticker], pd.Series]]:
    """Feature name -> the registry's ``ta`` expression, as a function of a ``_Ticker``."""
    refs: dict[str, Callable[[_Ticker], pd.Series]] = {}
    # returns
    for k in (1, 2, 3, 5, 10, 20, 60, 120, 250):
        refs[f"ret_{k}"] = lambda t, k=k: momentum.ROCIndicator(t.close, window=k).roc() / 100
    # volatility
    for w in (5, 10, 14):
        refs[f"atr_{w}_rel"] = lambda t, w=w: volatility.AverageTrueRange(t.high, t.low, t.close, window=w).average_true_range() / t.close
    refs["bb_pct_b_20"] = lambda t: t.bollinger().bollinger_pband()
    refs["bb_width_20"] = lambda t: t.bollinger().bollinger_wband() / 100
    refs["keltner_pct_20"] = lambda t: t.keltner().keltner_channel_pband()
    refs["keltner_width_20"] = lambda t: t.keltner().keltner_channel_wband() / 100
    # momentum
    for w in (6, 14, 21):
        refs[f"rsi_{w}"] = lambda t, w=w: momentum.RSIIndicator(t.close, window=w).rsi()
    refs["stoch_k_14"] = lambda t: t.stoch().stoch()
    refs["stoch_d_3"] = lambda t: t.stoch().stoch_signal()
    refs["williams_r_14"] = lambda t: momentum.WilliamsRIndicator(t.high, t.low, t.close, lbp=14).williams_r()
    refs["stoch_rsi_14"] = lambda t: momentum.StochRSIIndicator(t.close, window=14).stochrsi()
    refs["cci_20"] = lambda t: trend.CCIIndicator(t.high, t.low, t.close, window=20).cci()
    refs["mfi_14"] = lambda t: volume.MFIIndicator(t.high, t.low, t.close, t.volume, window=14).money_flow_index()
    refs["ultimate_osc"] = lambda t: momentum.UltimateOscillator(t.high, t.low, t.close).ultimate_oscillator()
    refs["awesome_osc_rel"] = lambda t: momentum.AwesomeOscillatorIndicator(t.high, t.low).awesome_oscillator() / t.close
    refs["tsi"] = lambda t: momentum.TSIIndicator(t.close).tsi()
    # trend
    refs["macd_rel"] = lambda t: t.macd().macd() / t.close
    refs["macd_signal_rel"] = lambda t: t.macd().macd_signal() / t.close
    refs["macd_hist_rel"] = lambda t: t.macd().macd_diff() / t.close
    for w in (10, 20, 40):
        refs[f"close_to_ema_{w}"] = lambda t, w=w: t.close / trend.EMAIndicator(t.close, window=w).ema_indicator() - 1
    refs["adx_14"] = lambda t: t.adx().adx()
    refs["adx_pos_14"] = lambda t: t.adx().adx_pos()
    refs["adx_neg_14"] = lambda t: t.adx().adx_neg()
    refs["psar_dist"] = lambda t: (t.close - t.psar().psar()) / t.close
    refs["psar_up"] = lambda t: t.psar().psar_up().notna().astype(np.float64)
    refs["ichimoku_conv_dist"] = lambda t: t.close / t.ichimoku().ichimoku_conversion_line() - 1
    refs["ichimoku_base_dist"] = lambda t: t.close / t.ichimoku().ichimoku_base_line() - 1
    refs["ichimoku_a_dist"] = lambda t: t.close / t.ichimoku().ichimoku_a() - 1
    refs["ichimoku_b_dist"] = lambda t: t.close / t.ichimoku().ichimoku_b() - 1
    refs["aroon_up_25"] = lambda t: t.aroon().aroon_up()
    refs["aroon_down_25"] = lambda t: t.aroon().aroon_down()
    refs["vortex_pos_14"] = lambda t: t.vortex().vortex_indicator_pos()
    refs["vortex_neg_14"] = lambda t: t.vortex().vortex_indicator_neg()
    refs["trix_15"] = lambda t: trend.TRIXIndicator(t.close, window=15).trix()
    refs["mass_index"] = lambda t: trend.MassIndex(t.high, t.low, window_fast=9, window_slow=25).mass_index()
    refs["dpo_20_rel"] = lambda t: trend.DPOIndicator(t.close, window=20).dpo() / t.close
    refs["ulcer_index_14"] = lambda t: volatility.UlcerIndex(t.close, window=14).ulcer_index()
    # volume
    for w in (20, 60):
        refs[f"obv_change_{w}"] = lambda t, w=w: t.obv().diff(w) / t.volume.rolling(w).sum()
    refs["cmf_20"] = lambda t: volume.ChaikinMoneyFlowIndicator(t.high, t.low, t.close, t.volume, window=20).chaikin_money_flow()
    refs["force_index_13_rel"] = lambda t: (
        volume.ForceIndexIndicator(t.close, t.volume, window=13).force_index() / (t.close * t.volume.rolling(20).mean())
    )
    for w in (14, 60):
        refs[f"vwap_dist_{w}"] = lambda t, w=w: (
            t.close / volume.VolumeWeightedAveragePrice(t.high, t.low, t.close, t.volume, window=w).volume_weighted_average_price() - 1
        )
    # rolling
    for w in (5, 10, 20, 30, 60, 120, 250):
        refs[f"close_to_sma_{w}"] = lambda t, w=w: t.close / trend.SMAIndicator(t.close, window=w).sma_indicator() - 1
    return refs


_REFS = _references()
# Features without a ta equivalent must not appear; every one with one must.
assert set(_REFS) == {s.name for s in FEATURE_REGISTRY if s.ta}, "ta references and registry disagree"


def _series(values: pd.Series, n: int) -> pd.Series:
    out = pd.Series(np.asarray(values, dtype=np.float64))
    assert len(out) == n
    return out


def _one(func: Callable[[_Ticker], pd.Series]) -> Callable[[pd.DataFrame], pd.Series]:
    def reference(one_ticker: pd.DataFrame) -> pd.Series:
        with np.errstate(divide="ignore", invalid="ignore"):
            return _series(func(_Ticker(one_ticker)), len(one_ticker))

    reference.__doc__ = func.__doc__
    return reference


TA_REFERENCE: dict[str, Callable[[pd.DataFrame], pd.Series]] = {s.name: _one(_REFS[s.name]) for s in FEATURE_REGISTRY if s.name in _REFS}


def ta_all(one_ticker: pd.DataFrame) -> dict[str, pd.Series]:
    """Every ``TA_REFERENCE`` feature of one ticker, each ``ta`` indicator object built once."""
    t = _Ticker(one_ticker)
    n = len(one_ticker)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {name: _series(_REFS[name](t), n) for name in TA_REFERENCE}
