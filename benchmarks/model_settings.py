"""Model settings on a real training set: ``.venv/bin/python benchmarks/model_settings.py [--warehouse PATH]``.

Reads the ``training_set`` a training run stored (default: ``$STOCKML_HOME/warehouse.duckdb``, e.g.
after ``stockml run``) and, for each RandomForest and XGBoost setting below, fits the walk-forward
folds exactly as training does (``training.folds_for``, ``models.out_of_fold``: purged, embargoed,
weighted) and prints the out-of-fold accuracy and log loss with the seconds the fold fits took. The
defaults in ``TrainingSettings`` are the cheapest settings that score at least as well as the
previous ones; the scores are out-of-fold, but choosing among settings on them is a (small) selection
on the test folds, so the defaults stay with round numbers and do not chase the best score.

    .venv/bin/python benchmarks/model_settings.py --rf-trees 100 60 --xgb-rounds 150 100 75 50
"""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``stockml_core`` importable
    sys.path.insert(0, str(ROOT))

from stockml_core import models, training  # noqa: E402
from stockml_core.evaluation import classification_metrics  # noqa: E402
from stockml_core.features import FEATURE_NAMES  # noqa: E402
from stockml_core.settings import Settings  # noqa: E402
from stockml_core.warehouse import Warehouse  # noqa: E402


def oof_scores(ts, kind: str, s: Settings) -> tuple[float, float, float]:
    """(accuracy, log loss, seconds) of ``kind``'s walk-forward out-of-fold probabilities under ``s``."""
    X = ts[FEATURE_NAMES].to_numpy(dtype="float32")
    y, w = ts.label.to_numpy().astype(int), ts.weight.to_numpy()
    t = time.perf_counter()
    oof = models.out_of_fold(kind, X, y, w, training.folds_for(ts, s), s.training)
    seconds = time.perf_counter() - t
    ok = ~np.isnan(oof).any(axis=1)
    m = classification_metrics(y[ok], oof[ok])  # the validation report's own definitions
    return m["accuracy"], m["log_loss"], seconds


def main() -> int:
    base = Settings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path, default=base.warehouse_path)
    ap.add_argument("--rf-trees", type=int, nargs="*", default=[100, base.training.rf_trees])
    ap.add_argument("--xgb-rounds", type=int, nargs="*", default=[150, base.training.xgb_rounds])
    a = ap.parse_args()
    ts = Warehouse(a.warehouse).read('select * from "assets"."training_set"')
    if ts.empty:
        print(f"{a.warehouse}: no training_set stored; run `stockml run` first")
        return 1
    ts = ts.sort_values(["date", "ticker"]).reset_index(drop=True)
    print(f"training set: {len(ts):,} rows x {len(FEATURE_NAMES)} features, {ts.date.min():%Y-%m-%d}..{ts.date.max():%Y-%m-%d}, "
          f"sources {ts.source.value_counts().to_dict()}; {base.training.n_folds} walk-forward folds, n_jobs {base.training.n_jobs}")
    print(f"{'model':8s} {'setting':>14s} {'accuracy':>9s} {'log loss':>9s} {'fold fits s':>12s}")
    for kind, field, values in (("rf", "rf_trees", a.rf_trees), ("xgb", "xgb_rounds", a.xgb_rounds)):
        for v in values:
            s = replace(base, training=replace(base.training, **{field: v}))
            acc, ll, sec = oof_scores(ts, kind, s)
            mark = "  (default)" if v == getattr(base.training, field) else ""
            print(f"{kind:8s} {f'{field}={v}':>14s} {acc:9.4f} {ll:9.4f} {sec:12.1f}{mark}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
