"""The allocator setting used by probe training: large freed blocks are reused instead of page-faulted anew."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# Minor page faults of 20 allocations of a 64 MB tensor, before and after reuse_freed_memory(), in a fresh process
# (the setting is process-wide and set once).
CHILD = """
import resource, torch
from evaluation.probes.allocator import reuse_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.ones(16 << 20).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
default = faults()
changed = reuse_freed_memory()
faults()
print(default, faults(), changed, reuse_freed_memory())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_reuse_freed_memory_stops_page_faults_on_repeated_large_allocations():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout.split()
    default, reused = int(out[0]), int(out[1])
    assert out[2:] == ["True", "True"]
    assert default > 20 * (64 << 20) // 4096 // 2  # every allocation faults in most of its 16384 pages
    assert reused < default // 50
