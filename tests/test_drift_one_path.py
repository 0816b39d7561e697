"""Drift is computed once: what benchmarks/drift_policy.py calibrates is what the drift assets store.

A real slice, the history run (no training: no champion, so no prediction part on either side),
then a daily range run over a month; the benchmark's scores for those days, from the same data
folder through its own loading, equal the stored drift_report scores.
"""

import numpy as np
import pandas as pd

from benchmarks.drift_policy import load, scores_for
from stockml_core.settings import DriftSettings
from stockml_core.storage.warehouse import Warehouse
from tests.conftest import run_daily_job, run_history_job, slice_config, write_slice_folder

MONTH = ("2006-02-01", "2006-02-28")


def test_benchmark_scores_equal_the_stored_drift_report_on_a_replayed_month(fresh_instance, tmp_path) -> None:
    folder, home = tmp_path / "data", tmp_path / "home"
    write_slice_folder(folder, tickers=["XOM", "KO", "JPM"], start="2004-06-01", end=MONTH[1])
    config = slice_config(home, data_dir=folder, tickers=None, start=None)
    history = run_history_job(fresh_instance, "2004-06-01", "2006-01-31", train=False, **config)
    assert history.success
    daily = run_daily_job(fresh_instance, MONTH[0], last=MONTH[1], **config)
    assert daily.success
    stored = Warehouse(home / "warehouse.duckdb").read('select date, value from "assets".drift_report where component = ? order by date', ["overall"])
    stored = pd.Series(stored.value.to_numpy(), index=pd.DatetimeIndex(stored.date))
    assert len(stored) == 19 and stored.index.min() == pd.Timestamp(MONTH[0])  # February 2006's trading days

    features, _, regimes = load(folder)
    bench = scores_for(features, regimes, DriftSettings(), stored.index.to_numpy(), workers=1).score
    assert list(bench.index) == list(stored.index)
    np.testing.assert_allclose(bench.to_numpy(), stored.to_numpy(), rtol=0, atol=1e-12)
    assert stored.max() > stored.min()  # the scores move over the month: the comparison is not of constants
