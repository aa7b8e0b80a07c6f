"""common/evaluation/malloc.py: freed memory kept for reuse."""
import os
import platform
import subprocess
import sys

import pytest

from conftest import ROOT

HEAP_OR_MMAP = """
import ctypes, sys
from common.evaluation.malloc import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, (ctypes.c_size_t,), (ctypes.c_void_p,)
took = keep_freed_memory() if sys.argv[1] == "keep" else None
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 * 2 ** 20)  # the size of a 64 MiB tensor (torch allocates it with malloc)
mapped = libc.mallinfo2().hblkhd - before
libc.free(block)
print(took, mapped, libc.mallinfo2().fordblks)
"""


ALLOCATOR_ENV = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD")  # what would change glibc's defaults in the child


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
                    or tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 33),
                    reason="glibc 2.33 or later (mallinfo2)")
def test_keep_freed_memory_takes_large_blocks_from_the_heap_and_keeps_them_there():
    env = {k: v for k, v in os.environ.items() if not k.startswith(ALLOCATOR_ENV)}

    def run(mode):  # a fresh process each: the settings are process-wide
        took, mapped, free_in_heap = subprocess.run([sys.executable, "-c", HEAP_OR_MMAP, mode], cwd=ROOT, env=env,
                                                    capture_output=True, text=True, check=True).stdout.split()
        return took, int(mapped), int(free_in_heap)
    took, mapped, _ = run("default")
    assert took == "None" and mapped >= 64 * 2 ** 20  # by default glibc maps a block this large on its own
    took, mapped, free_in_heap = run("keep")
    assert took == "True" and mapped == 0  # taken from the heap...
    assert free_in_heap >= 64 * 2 ** 20  # ...and, once freed, kept there for the next one: not trimmed
