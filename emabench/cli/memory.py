"""How the ``emabench`` process asks the C allocator to treat memory it frees: keep it for the next epoch.

A stack of hundreds of replicas allocates and frees the same few hundred MB every epoch (evaluation chunks,
activations). glibc's defaults hand large freed blocks back to the kernel, so each epoch pays the page faults of
mapping them again: at 1,024 replicas of the seed study that was evaluation at 0.37 ms a replica-epoch against
0.13 ms kept (the whole replica-epoch 1.63 → 1.42 ms), with the same peak memory (1.29 GB either way), and no change
for a single run. The setting is the process's, so only the command line makes it: code that imports
:mod:`emabench` as a library keeps its own allocator settings.
"""

from __future__ import annotations

import ctypes
import os

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h: return the top of the heap above this many free bytes
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h: serve blocks from their own mapping at or above this size
_LARGEST = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory in the process (True) or leave the allocator alone where it is not glibc."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols, glibc's among them
    except (OSError, AttributeError, ValueError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST))
