"""StockML's Dagster layer."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Single-run backfills and freshness policies are marked beta/preview in Dagster 1.13; we use them deliberately.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _LIBC = False
    return _LIBC


# A full collection costs 0.2-0.9 s with Dagster loaded, whatever the heap holds; below this resident size
# there is too little to win back to pay for it (a 6-ticker history run spent 3 of its 58 s collecting).
COLLECT_ABOVE_BYTES = 1 << 31  # 2 GiB


def resident_bytes() -> int:
    """This process's resident memory (Linux ``/proc/self/statm``; 0 where it cannot be read)."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_freed_memory(collect: bool = True, above: int = COLLECT_ABOVE_BYTES) -> bool:
    """Free what a step left in reference cycles, then hand the heap's free pages back to the OS (glibc
    ``malloc_trim``); called after every step. Returns whether it collected.

    Step inputs and outputs (a training set of a gigabyte at 375 names) can sit in reference cycles
    through Dagster's step contexts and events; Python's cyclic collector reaches its oldest generation
    rarely, so without a collection here each step's frames stayed resident into the next steps
    (measured at 375 names x 20 years, ``benchmarks/scale.py``: ``rf_model`` started at 4.11 GiB
    resident without it, 0.69 GiB with it; the history run's peak fell from 8.54 to 5.36 GiB). A full
    collection costs about 0.2-0.9 s with Dagster loaded, so it runs only when the process holds more
    than ``above`` bytes (a small run skips it), and the daily job's small steps skip it
    (``collect=False``).
    """
    import gc

    collected = bool(collect and resident_bytes() > above)
    if collected:
        gc.collect()
    libc = _libc()
    if libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    return collected


def _return_freed_memory_to_the_os() -> None:
    """Large arrays freed by a step go back to the OS instead of staying in the process's heap.

    glibc raises its mmap threshold to the size of every mmapped block freed (up to 32 MiB), after
    which arrays below it come from the heap, which fragments and is rarely returned: in one
    in-process run over us-broad the resident memory crept up step after step by what earlier steps
    had freed. A fixed threshold keeps every block of 4 MiB or more mmapped, so freeing it unmaps it.
    """
    import sys

    libc = _libc()
    if sys.platform.startswith("linux") and libc and hasattr(libc, "mallopt"):
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD: fixed, which also turns off the dynamic adjustment


_return_freed_memory_to_the_os()
