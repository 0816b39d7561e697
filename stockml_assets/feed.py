"""A simulated market-data feed: a data folder that grows by one trading day at a time.

``stockml feed --source DIR --target DIR --start DATE --every SECONDS`` copies the source's
``sectors.csv``, ``market.csv[.gz]`` and ``rare_events.csv`` to the target and writes the target's
``prices.csv`` with the source's rows up to a moving date: first every row before ``--start``, then
one more trading day (of those present in the source) every ``SECONDS``, until the source is
exhausted. Each version of ``prices.csv`` is written to a temporary file and moved into place with
``os.replace``, so a reader (the daily schedule, a run) never sees a half-written file.

The market file is copied whole: ``market_context`` reads it only up to the run's day. Together
with ``STOCKML_DAILY_CRON="* * * * *"`` this drives the daemon through history in minutes
(tests/test_daemon.py).
"""

import bisect
import csv
import gzip
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

log = logging.getLogger("stockml.feed")

COPIED = ("sectors", "market", "rare_events")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _find(folder: Path, stem: str, required: bool = True) -> Path | None:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (folder / name).exists():
            return folder / name
    if required:
        raise FileNotFoundError(f"{folder}: no {stem}.csv or {stem}.csv.gz")
    return None


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", newline="") as f:
            return f.read()
    return path.read_text()


class PriceSource:
    """The source's price rows, kept as text (no float re-formatting) and ordered by date."""

    def __init__(self, source: Path):
        text = _read_text(_find(source, "prices"))
        lines = text.splitlines(keepends=True)
        if not lines:
            raise ValueError(f"{source}: empty prices file")
        self.header = lines[0] if lines[0].endswith("\n") else lines[0] + "\n"
        columns = next(csv.reader([lines[0]]))
        if "date" not in columns:
            raise ValueError(f"{source}: prices file has no 'date' column (columns: {columns})")
        col = columns.index("date")
        rows = []
        for line in lines[1:]:
            if not line.strip():
                continue
            line = line if line.endswith("\n") else line + "\n"
            raw = next(csv.reader([line]))[col].strip()
            day = raw if _ISO_DAY.fullmatch(raw) else pd.Timestamp(raw).strftime("%Y-%m-%d")
            rows.append((day, line))
        rows.sort(key=lambda r: r[0])  # stable: a day's rows keep the source's order
        self.days = [r[0] for r in rows]  # one entry per row, sorted
        self.lines = [r[1] for r in rows]
        self.trading_days = sorted(set(self.days))

    def rows_through(self, day: str) -> int:
        """How many rows have a date up to ``day`` (inclusive)."""
        return bisect.bisect_right(self.days, day)

    def rows_before(self, day: str) -> int:
        """How many rows have a date before ``day``."""
        return bisect.bisect_left(self.days, day)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what a plain open() would give (mkstemp makes files 0600)


def _atomic_replace(path: Path, fill) -> None:
    """Write ``path`` through a temp file in its folder (``fill(tmp_path)`` writes it), then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fill(tmp)
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write(path: Path, text: str) -> None:
    def fill(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    _atomic_replace(path, fill)


def _copy_atomic(src: Path, dst: Path) -> None:
    _atomic_replace(dst, lambda tmp: shutil.copyfile(src, tmp))


def copy_static(source: Path, target: Path) -> None:
    """Copy sectors, market and rare events (whichever of .csv/.csv.gz the source has) to the target.

    A stale variant with the other suffix is removed, since readers prefer ``.csv`` over ``.csv.gz``.
    """
    target.mkdir(parents=True, exist_ok=True)
    for stem in COPIED:
        src = _find(source, stem, required=stem != "rare_events")
        if src is None:
            continue
        dst = target / src.name
        other = target / (f"{stem}.csv.gz" if src.name.endswith(".csv") else f"{stem}.csv")
        other.unlink(missing_ok=True)
        _copy_atomic(src, dst)
    # The feed writes prices.csv; a prices.csv.gz left in the target would be another truth.
    (target / "prices.csv.gz").unlink(missing_ok=True)


def write_prices(src: PriceSource, target: Path, n_rows: int) -> None:
    _atomic_write(target / "prices.csv", src.header + "".join(src.lines[:n_rows]))


def prepare(source: Path, target: Path, start: str) -> tuple[PriceSource, list[str]]:
    """The feed's initial state: static files copied and every price row before ``start`` written.

    Returns the source and the trading days still to release (those on or after ``start``).
    """
    source, target = Path(source), Path(target)
    start = pd.Timestamp(start).strftime("%Y-%m-%d")
    src = PriceSource(source)
    copy_static(source, target)
    write_prices(src, target, src.rows_before(start))
    return src, [d for d in src.trading_days if d >= start]


def run_feed(
    source: Path, target: Path, start: str, every: float, *, sleep: Callable[[float], None] = time.sleep, say: Callable[[str], None] | None = None
) -> int:
    """Run the feed until the source is exhausted; returns the number of days released after ``start``."""
    say = say or log.info
    src, pending = prepare(source, target, start)
    start = pd.Timestamp(start).strftime("%Y-%m-%d")
    before = [d for d in src.trading_days if d < start]
    say(
        f"feed {source} -> {target}: {src.rows_before(start)} rows up to {before[-1] if before else 'none'} written; "
        f"{len(pending)} trading day(s) to release, one every {every:g} s"
    )
    t0 = time.monotonic()
    for i, day in enumerate(pending, 1):
        sleep(max(0.0, t0 + i * every - time.monotonic()))  # on a fixed cadence, however long a write takes
        n = src.rows_through(day)
        write_prices(src, target, n)
        say(f"released {day}: {n - src.rows_before(day)} rows ({i}/{len(pending)}; {len(pending) - i} left)")
    say(f"source exhausted after {len(pending)} release(s); last day {pending[-1] if pending else 'none'}")
    return len(pending)
