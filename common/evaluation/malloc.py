"""glibc's malloc told to keep freed memory for the next allocation (evaluate.py's loops).

By default glibc serves each block above its mmap threshold (128 KiB, rising with use to
32 MiB) with a fresh mmap and unmaps it when freed. An evaluation frees and allocates the
same large activations (a [128, 32, 2000] audio map is 16-33 MB) thousands of times, so each
batch faulted its pages in again. On an attention-tokens run, measured back to back: 19 s of
system time and 86-90 s in all by default; 6-7 s and 77-85 s with the main thread's blocks
taken from the heap and the heap never trimmed, for about 0.5 GB more peak memory (3.5 GB).
Other threads' heaps hold at most 64 MiB, so their larger blocks (the 187 MB array of a
rendered audio level, made on evaluate.py's noise thread) are still mapped one by one.
Nothing numerical changes. The settings are process-wide: scripts that call this function
get them, and so does a test process that runs evaluate.py's main() in-process.
"""
import ctypes

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
NEVER = -1  # as the M_TRIM_THRESHOLD value: no trimming at all (man mallopt)


def keep_freed_memory():
    """No block gets its own mmap (other threads' blocks over 64 MiB excepted) and the heap is never
    given back to the kernel. True where the C library took the settings; False elsewhere (macOS,
    musl, Windows), where nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library Python runs on; no library search
    except (OSError, AttributeError, TypeError):  # no such function (macOS), no global handle (Windows)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, NEVER) == 1
