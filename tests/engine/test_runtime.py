"""engine.runtime.ModelThread: one thread runs every submitted call, one at a time, and hands back
results and exceptions; a call from the model thread itself runs inline."""

from __future__ import annotations

import threading
import time

import pytest

from engine.runtime import DecodeThreads, ModelThread


def test_calls_from_many_threads_run_on_one_thread_one_at_a_time():
    worker = ModelThread(name="test-model")
    ran_on: list[int] = []
    order: list[int] = []
    running, most_at_once = [0], [0]
    gate = threading.Event()

    def first() -> str:
        gate.wait(10)  # hold the model thread until every caller has submitted
        ran_on.append(threading.get_ident())
        return "first"

    def job(n: int) -> int:
        running[0] += 1
        most_at_once[0] = max(most_at_once[0], running[0])
        ran_on.append(threading.get_ident())
        order.append(n)
        time.sleep(0.001)  # a second thread running jobs would overlap here
        running[0] -= 1
        return n * n

    results: dict[int, int] = {}
    holder = threading.Thread(target=lambda: results.__setitem__(-1, worker.run(first)))
    holder.start()
    callers = []
    for n in range(6):
        callers.append(threading.Thread(target=lambda n=n: results.__setitem__(n, worker.run(job, n))))
        callers[-1].start()
    gate.set()
    for thread in (holder, *callers):
        thread.join(10)
    assert results == {-1: "first", **{n: n * n for n in range(6)}}
    assert len(set(ran_on)) == 1 and ran_on[0] not in {t.ident for t in (holder, *callers)}
    assert sorted(order) == list(range(6)) and most_at_once[0] == 1


def test_exceptions_reach_the_caller_and_the_thread_survives():
    worker = ModelThread(name="test-model")

    def fail() -> None:
        raise ValueError("bad prompt")

    with pytest.raises(ValueError, match="bad prompt"):
        worker.run(fail)
    assert worker.run(lambda: 7) == 7


def test_a_nested_call_runs_inline_and_run_timed_reports_the_wait():
    worker = ModelThread(name="test-model")
    inner = worker.run(lambda: worker.run(threading.get_ident))  # would deadlock if queued
    assert inner == worker.run(threading.get_ident)
    value, waited = worker.run_timed(lambda x: x + 1, 1)
    assert value == 2 and waited >= 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_decode_threads_fall_back_to_one_while_every_core_stalls_and_try_again_later():
    clock = FakeClock()
    threads = DecodeThreads(2, backoff=5.0, max_backoff=20.0, clock=clock)
    assert threads.next() == 1  # the first decode learns one thread's usual time
    threads.record(1, 0.030)
    assert threads.next() == 2
    threads.record(2, 0.025)  # faster than one thread: stay
    threads.record(2, 0.055)  # within 2x one thread's usual time: stay
    assert threads.next() == 2
    threads.record(2, 0.600)  # every core stalled
    assert threads.next() == 1
    threads.record(1, 0.030)
    clock.now = 4.9
    assert threads.next() == 1
    clock.now = 5.0
    assert threads.next() == 2  # try every core again
    threads.record(2, 0.500)  # still stalls: back off twice as long
    clock.now = 14.9
    assert threads.next() == 1
    clock.now = 15.0
    threads.record(2, 0.500)
    clock.now = 34.9  # at most max_backoff
    assert threads.next() == 1
    clock.now = 35.0
    threads.record(2, 0.020)  # quiet again: stays, and the back-off starts over
    assert threads.next() == 2
    threads.record(2, 0.600)
    clock.now = 40.0
    assert threads.next() == 2


def test_decode_threads_fixed_or_single_core_never_change():
    fixed = DecodeThreads(3, fixed=True)
    fixed.record(3, 10.0)
    assert fixed.next() == 3
    single = DecodeThreads(1)
    single.record(1, 0.03)
    assert single.next() == 1
    with pytest.raises(ValueError):
        DecodeThreads(0)


def test_decode_threads_default_to_torchs_count_on_the_calling_thread():
    import torch

    worker = ModelThread(name="test-model")
    threads = DecodeThreads(None)
    assert worker.run(threads.next) == 1  # learning one thread's time first
    assert threads.most == worker.run(torch.get_num_threads)
