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


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc ``malloc_trim``); called after every step."""
    libc = _libc()
    if libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


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
