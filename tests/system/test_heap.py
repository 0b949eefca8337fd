"""return_free_memory gives freed heap pages back: the agent's idle RSS is what it holds."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Frees 64 MB of 4 kB blocks but keeps the last one, so the free space sits below a live
# block and glibc's automatic trim (only at the heap's top) cannot return it.
_SCRIPT = """
import sys
from netpersona.system.heap import return_free_memory

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

blocks = [bytearray(4096) for _ in range(16384)]
last = blocks[-1]
del blocks
held = rss_kb()
return_free_memory()
print(held, rss_kb())
"""


@pytest.mark.subprocess
def test_freed_heap_pages_go_back_to_the_kernel() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True
    )
    held, after = map(int, done.stdout.split())
    assert held - after > 32_000, (held, after)
