"""glibc malloc settings for a serving process: the memory a request's body freed is kept for
the next one, not handed back to the kernel and faulted in again.

Why: a pushed body arrives in pieces of up to 256 KiB (a socket read, then the parser's slice
of it), each a `bytes` that malloc serves, and a few MiB of them are alive at once while they
are written and hashed. With glibc's defaults, free memory at the top of the heap goes back to
the kernel once it exceeds a threshold that starts at 128 KiB (it follows the largest block
freed), so every chunked PATCH grew the heap anew, faulting in and clearing fresh pages:
1,838 `brk` calls over three chunked pushes of 256 MiB. Keeping the memory took about a
quarter off the server's CPU for those pushes (bench/PROFILE.md, session 13). Fixed
thresholds keep up to TRIM_THRESHOLD free at the top, and serve blocks below MMAP_THRESHOLD
from the heap, where a freed one is reused.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 8 << 20  # free bytes kept at the top of the heap, at most
MMAP_THRESHOLD = 1 << 20  # smaller blocks come from the heap


def glibc() -> ctypes.CDLL | None:
    """The process's C library, if it is glibc (musl's `mallopt` does nothing)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Apply the settings to this process; False where the C library is not glibc, or
    refuses them."""
    libc = glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
