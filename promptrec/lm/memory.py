"""Process memory policy: large freed tensor buffers go back to the operating system.

glibc's malloc serves a request above its mmap threshold from a mapping of its own, unmapped on
free. But each time such a block is freed it raises the threshold to that block's size (up to
32 MiB), so from then on tensor buffers of that size come from the heap; and a heap interleaved
with long-lived tensors (the layer inputs kept for backward, a KV cache) cannot shrink. On the 135M
model a checkpointed 4-example training pass held ~0.7 GB of freed buffers resident this way, more
than its live tensors. Fixing the threshold (any explicit setting turns the adjustment off) keeps
large buffers in their own mappings.

Only the C library is touched (no torch). It is process-wide, so the CLI sets it when a command
starts; a program that embeds promptrec can call it too, or leave its allocator alone.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # mallopt() parameter number, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1 << 20  # larger blocks get their own mapping (chosen in eval/bench_memory.py)


def release_large_buffers(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc malloc's mmap threshold for this process; False where the C library is not glibc."""
    try:
        # The process's own symbols: the C library is already loaded, and ctypes.util.find_library
        # would run ldconfig in a subprocess (~8 ms on every command's start).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # musl, macOS, Windows: their allocators behave otherwise
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold_bytes))
