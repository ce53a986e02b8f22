"""Caps glibc's malloc arenas in the long-running patrol.

glibc gives threads that contend for the heap arenas of their own, up to eight per core, and keeps
what is freed in each for reuse rather than handing it back. A worker's decode, analysis and
evidence threads come and go with its cameras (a fleet moves cameras on every lease change), so
each move left its resident memory a few tens of MiB higher: in the soak a worker that took over
another's three cameras grew 45 MiB each time and never came down. With two arenas the same churn
stays level (ten add/remove cycles of three cameras: 374 -> 437 MiB by default, 393 -> 392 MiB
capped), at no cost seen in throughput. The usual way is the MALLOC_ARENA_MAX environment
variable; setting it here as well means every way of starting the patrol gets it.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc malloc.h
ARENAS = 2


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Caps the arenas threads created from now on may use; False where the operator set
    MALLOC_ARENA_MAX (glibc read it at start) or the C library is not glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return libc.mallopt(M_ARENA_MAX, arenas) == 1
