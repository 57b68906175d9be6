"""The micro-batcher: concurrent jobs share a turn, each job is answered when it is done, one job's error
stays its own, a bug in a turn does not stop the worker, a full queue is BusyError."""

import asyncio
import threading

import pytest

from promptrec.jobs.batching import BusyError, MicroBatcher


class Recorder:
    """A run_batch that doubles numbers, fails on "bad", and can be held at a job until released."""

    def __init__(self, hold_at=None):
        self.turns, self.hold_at, self.release = [], hold_at, threading.Event()

    def __call__(self, jobs):
        self.turns.append(list(jobs))
        for index, job in enumerate(jobs):
            if job == self.hold_at:
                self.release.wait(10)
            if job == "bug":
                raise RuntimeError("a bug in the turn")
            yield index, ValueError(f"bad job {job}") if job == "bad" else job * 2


def running(recorder, **options):
    batcher = MicroBatcher(recorder, **({"max_batch": 8, "wait_seconds": 0.05, "max_queue": 16} | options))
    batcher.start()
    return batcher


def test_concurrent_jobs_share_a_turn_and_get_their_own_results():
    recorder = Recorder()
    batcher = running(recorder)

    async def clients():
        return await asyncio.gather(*(batcher.submit(n) for n in range(5)))

    assert asyncio.run(clients()) == [0, 2, 4, 6, 8]
    batcher.stop()
    assert recorder.turns == [[0, 1, 2, 3, 4]] and (batcher.num_turns, batcher.num_jobs) == (1, 5)


def test_an_error_is_its_jobs_own_and_a_bug_does_not_stop_the_worker():
    batcher = running(Recorder())

    async def clients(jobs):
        return await asyncio.gather(*(batcher.submit(job) for job in jobs), return_exceptions=True)

    good, bad = asyncio.run(clients([1, "bad"]))
    assert good == 2 and isinstance(bad, ValueError)
    results = asyncio.run(clients([3, "bug", 4]))
    assert results[0] == 6 and all(isinstance(r, RuntimeError) for r in results[1:])
    assert asyncio.run(clients([5])) == [10] and batcher.alive
    batcher.stop()
    assert not batcher.alive


def test_a_job_done_early_in_a_turn_is_answered_before_the_turn_ends():
    recorder = Recorder(hold_at=2)
    batcher = running(recorder)

    async def clients():
        first = asyncio.ensure_future(batcher.submit(1))
        second = asyncio.ensure_future(batcher.submit(2))
        assert await asyncio.wait_for(first, 10) == 2
        assert not second.done()
        recorder.release.set()
        return await second

    assert asyncio.run(clients()) == 4
    batcher.stop()


def test_a_full_queue_is_busy():
    recorder = Recorder(hold_at=0)
    batcher = running(recorder, max_batch=1, max_queue=1)

    async def clients():
        held = asyncio.ensure_future(batcher.submit(0))  # the worker holds this one
        while not recorder.turns:
            await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(batcher.submit(1))  # fills the queue
        await asyncio.sleep(0.05)
        with pytest.raises(BusyError, match="1 requests are already waiting"):
            await batcher.submit(2)
        recorder.release.set()
        return await held, await queued

    assert asyncio.run(clients()) == (0, 2)
    batcher.stop()
