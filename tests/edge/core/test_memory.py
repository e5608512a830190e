"""glibc's malloc settings for a run (`edge.core.memory`)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# A fresh interpreter frees one 30 MB array (glibc then serves blocks up to 30 MB from its
# heap), makes 100 arrays of 1 MB between kept ones of 200 KB, frees them, and prints the MB
# that went back to the system (0 without the setting, all of them with it).
PROBE = """
import sys
import numpy as np
from edge.core.memory import release_freed_memory_early
if sys.argv[1] == "on":
    assert release_freed_memory_early()
def rss():
    status = open("/proc/self/status").read().split("VmRSS:")[1]
    return int(status.split()[0]) // 1024
big = np.ones(30 * 2**20, np.uint8)
del big
drop, keep = [], []
for _ in range(100):
    drop.append(np.ones(2**20, np.uint8))
    keep.append(np.ones(200 * 1024, np.uint8))
before = rss()
drop.clear()
print(before - rss())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_large_arrays_go_back_to_the_system():
    freed = {mode: int(subprocess.run([sys.executable, "-c", PROBE, mode], check=True,
                                      capture_output=True, text=True).stdout)
             for mode in ("off", "on")}
    assert freed["on"] >= 90 and freed["off"] < 50, freed
