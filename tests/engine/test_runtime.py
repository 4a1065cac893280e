"""engine.runtime.ModelThread: one thread runs every submitted call, one at a time, and hands back
results and exceptions; a call from the model thread itself runs inline."""

from __future__ import annotations

import threading
import time

import pytest

from engine.runtime import ModelThread


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
