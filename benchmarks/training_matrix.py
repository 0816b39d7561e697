"""Loading the training set the way a training step does: the memory-mapped float32 matrix vs the DuckDB table.

    .venv/bin/python benchmarks/training_matrix.py [--home $STOCKML_HOME] [--repeat 2]

Takes the training set a ``stockml run`` stored under ``--home`` (``stockml_core.storage.matrix_store``) and also
writes it, keys and features together, as one DuckDB table in a temporary warehouse: how every training step
received it before (the warehouse IO manager's ``select *`` into pandas, then the model's float32 copy of
the feature columns). Each way is then timed in a fresh process of its own, alternating, ``--repeat`` times:

- ``duckdb table``: ``select *`` into pandas, then ``frame[features].to_numpy(float32)``;
- ``mapped matrix``: ``TrainingMatrixStore.load`` (the SHA-256 check, the keys from DuckDB, the mapped file)
  then ``feature_array`` (the matrix itself, no copy), every page touched (a sum over it) as a model would.

Printed: wall and CPU seconds and the process's peak resident memory (file-backed mapped pages included),
with the ratios mapped / table measured in the same run.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GIB = 1024**3


def _child(way: str, home: Path, table_db: Path) -> dict:
    import numpy as np

    from stockml_core.features import FEATURE_NAMES
    from stockml_core.settings import Settings
    from stockml_core.storage.matrix_store import TrainingMatrixStore, feature_array
    from stockml_core.storage.warehouse import ASSET_SCHEMA, Warehouse

    c0, t0 = os.times(), time.perf_counter()
    if way == "duckdb table":
        frame = Warehouse(table_db).read(f'select * from "{ASSET_SCHEMA}"."training_set"')
        X = frame[FEATURE_NAMES].to_numpy(dtype="float32")
    else:
        frame = TrainingMatrixStore(Settings(home=home).training_set_dir, Warehouse(home / "warehouse.duckdb")).load()
        X = feature_array(frame, FEATURE_NAMES)
    total = float(np.add.reduce(X, axis=None, dtype="float64"))  # every page read, as a fit reads them
    wall, c1 = time.perf_counter() - t0, os.times()
    return {
        "way": way,
        "rows": len(frame),
        "wall": wall,
        "cpu": (c1.user - c0.user) + (c1.system - c0.system),
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
        "sum": total,
    }


def main() -> int:
    from stockml_core.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=Settings().home)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # way, table warehouse: one measurement
    a = ap.parse_args()
    if a.child:
        print(json.dumps(_child(a.child[0], a.home, Path(a.child[1]))))
        return 0
    from stockml_core.storage.matrix_store import TrainingMatrixStore
    from stockml_core.storage.warehouse import ASSET_SCHEMA, Warehouse

    store = TrainingMatrixStore(Settings(home=a.home).training_set_dir, Warehouse(a.home / "warehouse.duckdb"))
    if store.record() is None:
        print(f"{a.home}: no training set stored; run `stockml run` first")
        return 1
    with tempfile.TemporaryDirectory(prefix="stockml-tm-") as tmp:
        table_db = Path(tmp) / "table.duckdb"
        frame = store.load()
        with Warehouse(table_db).connect() as con:  # the previous storage: one table, keys and features
            con.execute(f'create schema "{ASSET_SCHEMA}"')
            con.execute(f'create table "{ASSET_SCHEMA}"."training_set" as select * from frame')
        rows, cols = frame.shape
        del frame
        print(
            f"training set under {a.home}: {rows:,} rows x {cols} columns; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True
        )
        results: dict[str, list[dict]] = {"duckdb table": [], "mapped matrix": []}
        for _ in range(a.repeat):
            for way in results:
                out = subprocess.run(
                    [sys.executable, __file__, "--home", str(a.home), "--child", way, str(table_db)], capture_output=True, text=True, check=True
                )
                results[way].append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {w: min(r, key=lambda x: x["wall"]) for w, r in results.items()}
    a_sum, b_sum = best["duckdb table"]["sum"], best["mapped matrix"]["sum"]  # summed in each array's own memory order
    assert abs(a_sum - b_sum) <= 1e-9 * max(abs(a_sum), 1.0), f"the two ways read different features ({a_sum} vs {b_sum})"
    print(f"{'way':14s} {'wall s':>8s} {'cpu s':>8s} {'peak GiB':>9s}   (best of {a.repeat}, each in a fresh process)")
    for w, r in best.items():
        print(f"{w:14s} {r['wall']:8.2f} {r['cpu']:8.2f} {r['peak_gib']:9.2f}")
    t, m = best["duckdb table"], best["mapped matrix"]
    print(
        f"mapped / table: wall {m['wall'] / t['wall']:.2f}x, cpu {m['cpu'] / t['cpu']:.2f}x, peak {m['peak_gib'] / t['peak_gib']:.2f}x"
        f"; load average {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
