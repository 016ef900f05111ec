"""Pausing Python's cyclic garbage collector while a profile is loaded, a bundle built or hosts audited.

Those phases allocate millions of small, long-lived, acyclic objects (YAML nodes, marks, plans,
rendered text); each full collection walks all of them again, which made up more than half of a
1,000-host build. Reference counting still frees everything that is not in a cycle, and the
collector runs again as soon as the phase ends.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector inside the block (or decorated function); nests."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
