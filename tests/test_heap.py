"""heap.py: collection paused while long-lived objects are made, frozen after, thawed on demand."""

import gc
import weakref

import pytest

from medboard.heap import freeze, long_lived, thaw


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_long_lived_pauses_collection_then_freezes_what_it_made() -> None:
    assert gc.isenabled()
    with long_lived():
        assert not gc.isenabled()
        kept = Node()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    gone = weakref.ref(kept)
    del kept
    gc.collect()
    assert gone() is not None  # frozen: not even a full collection looks at it
    thaw()
    assert gc.get_freeze_count() == 0
    assert gone() is None  # collected once thawed


def test_long_lived_leaves_a_paused_collector_paused() -> None:
    gc.disable()
    try:
        with long_lived():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        thaw()


def test_long_lived_restores_the_collector_on_error() -> None:
    with pytest.raises(RuntimeError, match="load failed"), long_lived():
        raise RuntimeError("load failed")
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    thaw()


def test_objects_made_after_a_freeze_are_still_collected() -> None:
    freeze()
    made = Node()
    gone = weakref.ref(made)
    del made
    gc.collect()
    assert gone() is None
    thaw()
