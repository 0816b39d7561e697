"""Batched event storage (``LocalEventLogStorage.store_event_batch``) against one-by-one storage, in one run.

A history backfill (ingestion and features, no training) of a real slice through the CLI, twice per
round, in fresh homes: once with ``DAGSTER_EVENT_BATCH_SIZE=0`` (Dagster stores every per-day
materialization by itself, as before) and once with the project's default (one batch per asset).
Prints wall and CPU time of each and their ratio; rounds alternate the order (the machine is noisy).

    .venv/bin/python benchmarks/event_log.py --tickers XOM,KO,JPM,IBM --start 2010-01-01 --rounds 2
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _backfill(data: Path, first: str, last: str, batch: str | None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, children) of one `stockml backfill --job history --no-training`."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "STOCKML_DATA_DIR": str(data),
            "STOCKML_HOME": f"{tmp}/home",
            "DAGSTER_HOME": f"{tmp}/dh",
            "STOCKML_FAST": "1",
            "STOCKML_AUTOMATION": "off",
        }
        env.pop("DAGSTER_EVENT_BATCH_SIZE", None)
        if batch is not None:
            env["DAGSTER_EVENT_BATCH_SIZE"] = batch
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "stockml_assets.cli", "backfill", first, last, "--job", "history", "--no-training"],
            env=env,
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    from stockml_assets.replay import data_span
    from stockml_core.settings import Settings
    from tests.conftest import write_slice_folder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickers", default="XOM,KO,JPM,IBM")
    ap.add_argument("--start", default="2010-01-01")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_slice_folder(data, tickers=args.tickers.split(","), start=args.start)
        first, last = (f"{d:%Y-%m-%d}" for d in data_span(Settings(data_dir=data, home=Path(tmp) / "h")))
        print(f"stockml backfill {first} {last} --job history --no-training on {args.tickers}")
        results: dict[str, list[tuple[float, float]]] = {"one by one": [], "batched": []}
        for r in range(args.rounds):
            order = [("one by one", "0"), ("batched", None)]
            for name, batch in order if r % 2 == 0 else order[::-1]:
                results[name].append(_backfill(data, first, last, batch))
                print(f"  round {r + 1} {name}: wall {results[name][-1][0]:.1f} s, CPU {results[name][-1][1]:.1f} s")
    (w0, c0), (w1, c1) = ([sum(x) / len(x) for x in zip(*results[k], strict=True)] for k in ("one by one", "batched"))
    print(
        f"one by one: wall {w0:.1f} s, CPU {c0:.1f} s | batched: wall {w1:.1f} s, CPU {c1:.1f} s | "
        f"batched / one by one: wall {w1 / w0:.2f}x, CPU {c1 / c0:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
