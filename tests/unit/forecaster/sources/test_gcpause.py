from __future__ import annotations

import gc
import threading

from forecaster.sources.gcpause import paused_collection


def test_collection_is_back_on_only_when_the_last_of_overlapping_pauses_ends():
    assert gc.isenabled()
    entered, leave = threading.Event(), threading.Event()

    def other() -> None:
        with paused_collection():
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    with paused_collection():
        thread.start()
        assert entered.wait(10)
    assert not gc.isenabled()  # the other thread's pause still holds
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    try:
        with paused_collection():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
