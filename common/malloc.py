"""glibc's malloc told to keep freed memory for the next allocation (evaluate.py's loops).

By default glibc serves each block above its mmap threshold (128 KiB, rising with use to
32 MiB) with a fresh mmap and unmaps it when freed. An evaluation frees and allocates the
same large activations (a [128, 32, 2000] audio map is 16-33 MB) thousands of times, so each
batch faulted its pages in again: 22-26 s of the 92-101 s an attention-tokens evaluation took
here was system time. With every block taken from the heap and the heap never trimmed, the
pages are reused: 8 s of system time, 78-86 s in all, for about 0.5 GB more peak memory.
Nothing numerical changes. The settings are process-wide, so only scripts that call this
function get them.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
NEVER_TRIM = 2 ** 31 - 1  # bytes: the largest value mallopt takes


def keep_freed_memory():
    """Serve every allocation from the heap and never give it back to the kernel. True where the
    C library took the settings; False elsewhere (macOS, musl, Windows), where nothing changes."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
