"""The project's event log against the alternatives, in one run.

A history backfill (ingestion and features, no training) of a real slice through the CLI, twice per
round, in fresh homes. ``--against batches`` (the default): ``DAGSTER_EVENT_BATCH_SIZE=0`` (every
per-day materialization stored by itself) against the project's default (one batch per asset), both
on ``LocalEventLogStorage``. ``--against dagster``: Dagster's own SQLite event log
(``STOCKML_EVENT_LOG=dagster``: public APIs only) against ``LocalEventLogStorage`` (which subclasses
private ``dagster._core`` storage classes): what the private APIs buy. Prints wall and CPU time of
each and their ratio; rounds alternate the order (the machine is noisy).

    .venv/bin/python benchmarks/event_log.py --tickers XOM,KO,JPM,IBM --start 2010-01-01 --rounds 2
    .venv/bin/python benchmarks/event_log.py --against dagster --tickers XOM,KO --start 2014-01-01 --rounds 1
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


def _backfill(data: Path, first: str, last: str, extra: dict[str, str]) -> tuple[float, float]:
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
        env.pop("STOCKML_EVENT_LOG", None)
        env.update(extra)
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


# --against: (name, environment) of the alternative, then of the project's default
ALTERNATIVES = {
    "batches": (("one by one", {"DAGSTER_EVENT_BATCH_SIZE": "0"}), ("batched", {})),
    "dagster": (("dagster's event log", {"STOCKML_EVENT_LOG": "dagster"}), ("stockml's event log", {})),
}


def main() -> int:
    from stockml_assets.runs import data_span
    from stockml_core.settings import Settings
    from tests.conftest import write_slice_folder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickers", default="XOM,KO,JPM,IBM")
    ap.add_argument("--start", default="2010-01-01")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--against", choices=list(ALTERNATIVES), default="batches")
    args = ap.parse_args()
    (base, base_env), (ours, ours_env) = ALTERNATIVES[args.against]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_slice_folder(data, tickers=args.tickers.split(","), start=args.start)
        first, last = (f"{d:%Y-%m-%d}" for d in data_span(Settings(data_dir=data, home=Path(tmp) / "h")))
        print(f"stockml backfill {first} {last} --job history --no-training on {args.tickers}")
        results: dict[str, list[tuple[float, float]]] = {base: [], ours: []}
        for r in range(args.rounds):
            order = [(base, base_env), (ours, ours_env)]
            for name, extra in order if r % 2 == 0 else order[::-1]:
                results[name].append(_backfill(data, first, last, extra))
                print(f"  round {r + 1} {name}: wall {results[name][-1][0]:.1f} s, CPU {results[name][-1][1]:.1f} s")
    (w0, c0), (w1, c1) = ([sum(x) / len(x) for x in zip(*results[k], strict=True)] for k in (base, ours))
    print(
        f"{base}: wall {w0:.1f} s, CPU {c0:.1f} s | {ours}: wall {w1:.1f} s, CPU {c1:.1f} s | "
        f"{ours} / {base}: wall {w1 / w0:.2f}x, CPU {c1 / c0:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
