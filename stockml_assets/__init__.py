"""StockML's Dagster layer."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Single-run backfills and freshness policies are marked beta/preview in Dagster 1.13; we use them deliberately.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)


def _return_freed_memory_to_the_os() -> None:
    """Large arrays freed by a step go back to the OS instead of staying in the process's heap.

    glibc raises its mmap threshold to the size of every mmapped block freed (up to 32 MiB), after
    which arrays below it come from the heap, which fragments and is rarely returned: in one
    in-process run over us-broad the resident memory crept up step after step by what earlier steps
    had freed. A fixed threshold keeps every block of 4 MiB or more mmapped, so freeing it unmaps it.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD: fixed, which also turns off the dynamic adjustment
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


_return_freed_memory_to_the_os()
