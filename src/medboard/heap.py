"""Python's cyclic garbage collector and the long-lived objects of an evaluation.

The collector scans every object it tracks whenever enough new ones have accumulated, and again
when the interpreter exits. Most objects of an evaluating process are made once and live to
its end: the imported libraries (torch, transformers, sympy: about half a million objects), the
model and the compiled code. Made inside `long_lived()` they are not scanned while they are
made, and are frozen (`gc.freeze`) after: later collections scan only what came since, and the
exit does not scan them at all. Their reference cycles are never collected while frozen, so a
long-lived process calls `thaw()` when they are done with (the worker, between jobs).
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_lived() -> Iterator[None]:
    """No cyclic collection while inside; everything alive on the way out is frozen."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def freeze() -> None:
    """Freeze everything alive now (e.g. after the first batch, which compiles)."""
    gc.freeze()


def thaw() -> None:
    """Make frozen objects collectable again and collect them."""
    gc.unfreeze()
    gc.collect()
