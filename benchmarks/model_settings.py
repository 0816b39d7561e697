"""Model settings on a real training set: ``.venv/bin/python benchmarks/model_settings.py [--warehouse PATH] [variants]``.

Reads the ``training_set`` a training run stored (default: ``$STOCKML_HOME/warehouse.duckdb``, e.g.
after ``stockml run``) and, for the defaults and each variant, fits the walk-forward folds exactly as
training does (``training.folds_for``, ``models.out_of_fold``: purged, embargoed, weighted) and prints
the out-of-fold accuracy, log loss and daily rank IC of the up-minus-down score, with the wall and
CPU seconds the fold fits took and their ratio to the defaults' in the same run. A variant is
``MODEL:FIELD=VALUE[,FIELD=VALUE]`` over ``TrainingSettings`` fields, e.g.

    .venv/bin/python benchmarks/model_settings.py rf:rf_max_rows_per_tree=50000 xgb:xgb_max_bin=64 --models rf xgb

Choosing among settings on these out-of-fold rows is a (small) selection on the test folds: the
defaults stay with round numbers and do not chase the best score.
"""

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``stockml_core`` importable
    sys.path.insert(0, str(ROOT))

from stockml_core.features import FEATURE_NAMES  # noqa: E402
from stockml_core.modeling import models, training  # noqa: E402
from stockml_core.modeling.evaluation import classification_metrics, information_coefficients  # noqa: E402
from stockml_core.settings import Settings, TrainingSettings  # noqa: E402
from stockml_core.storage.matrix_store import TrainingMatrixStore  # noqa: E402
from stockml_core.storage.warehouse import Warehouse  # noqa: E402


def oof_scores(ts, kind: str, s: Settings) -> dict[str, float]:
    """Out-of-fold accuracy, log loss, rank IC and the fits' wall / CPU seconds of ``kind`` under ``s``."""
    X = ts[FEATURE_NAMES].to_numpy(dtype="float32")
    y, w = ts.label.to_numpy().astype(int), ts.weight.to_numpy()
    t, c = time.perf_counter(), os.times()
    oof = models.out_of_fold(kind, X, y, w, training.folds_for(ts, s), s.training)
    c2 = os.times()
    seconds = time.perf_counter() - t
    ok = ~np.isnan(oof).any(axis=1)
    m = classification_metrics(y[ok], oof[ok])  # the validation report's own definitions
    ic = information_coefficients(ts.date[ok], oof[ok, 2] - oof[ok, 0], ts.fwd_return.to_numpy()[ok])
    return {
        "accuracy": m["accuracy"],
        "log_loss": m["log_loss"],
        "rank_ic": ic["rank_ic"],
        "wall": seconds,
        "cpu": (c2.user - c.user) + (c2.system - c.system) + (c2.children_user - c.children_user),
    }


def _variant(text: str) -> tuple[str, dict]:
    kind, _, body = text.partition(":")
    fields = TrainingSettings.__dataclass_fields__
    out = {}
    for part in filter(None, body.split(",")):
        key, _, value = part.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown TrainingSettings field {key}")
        out[key] = (
            None
            if value == "None"
            else type(getattr(TrainingSettings(), key) or 0.0)(float(value))
            if not isinstance(getattr(TrainingSettings(), key), int)
            else int(float(value))
        )
    return kind, out


def main() -> int:
    base = Settings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path, default=base.warehouse_path)
    ap.add_argument("--models", nargs="*", default=["rf", "xgb"])
    ap.add_argument("variants", nargs="*", help="MODEL:FIELD=VALUE[,FIELD=VALUE] over TrainingSettings")
    a = ap.parse_args()
    store = TrainingMatrixStore(Settings(home=a.warehouse.parent).training_set_dir, Warehouse(a.warehouse))
    if store.record() is None:
        print(f"{a.warehouse}: no training_set stored; run `stockml run` first")
        return 1
    ts = store.load()  # stored by date, then ticker
    print(
        f"training set: {len(ts):,} rows x {len(FEATURE_NAMES)} features, {ts.date.min():%Y-%m-%d}..{ts.date.max():%Y-%m-%d}, "
        f"sources {ts.source.value_counts().to_dict()}; {base.training.n_folds} walk-forward folds, n_jobs {base.training.n_jobs}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'model':5s} {'setting':48s} {'accuracy':>9s} {'log loss':>9s} {'rank IC':>8s} {'wall s':>7s} {'cpu s':>7s} {'x wall':>7s}")
    plan = [(k, {}) for k in a.models] + [_variant(v) for v in a.variants]
    ref: dict[str, float] = {}
    for kind, changes in plan:
        s = replace(base, training=replace(base.training, **changes))
        r = oof_scores(ts, kind, s)
        ref.setdefault(kind, r["wall"])
        label = ",".join(f"{k}={v}" for k, v in changes.items()) or "(defaults)"
        print(
            f"{kind:5s} {label:48s} {r['accuracy']:9.4f} {r['log_loss']:9.4f} {r['rank_ic']:8.4f} {r['wall']:7.1f} "
            f"{r['cpu']:7.1f} {r['wall'] / ref[kind]:7.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
