"""Dynamic micro-batching: one worker thread owns the model; concurrent requests are scored together.

Request handlers (on the event loop) `await batcher.submit(job)`. The worker blocks for the first
waiting job, then keeps taking jobs until it holds `max_batch` of them or `wait_seconds` have passed
since the first, and hands the whole turn to `run_batch(jobs)`, which yields (index, result or
exception) for every job as soon as that job is done: a job that finishes early in a turn is answered
without waiting for the rest. Jobs that arrive while a turn is running wait in the queue and form the next
turn, so under load the turns fill up by themselves and the wait only costs a lone request a few
milliseconds. The model is only ever touched by the worker thread: no locks around torch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

from promptrec.core.errors import PromptrecError

logger = logging.getLogger(__name__)


class BusyError(PromptrecError):
    """The queue is full: the server is answering as fast as it can (HTTP 503)."""


_STOP = object()


class MicroBatcher:
    def __init__(self, run_batch: Callable[[list], Iterator], max_batch: int, wait_seconds: float, max_queue: int):
        self.run_batch, self.max_batch, self.wait_seconds = run_batch, max_batch, wait_seconds
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self.num_turns = 0  # turns run so far, and the jobs they held: their ratio is the mean batch size
        self.num_jobs = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="promptrec-scoring", daemon=True)
        self._thread.start()

    def stop(self, timeout_seconds: float = 30.0) -> None:
        """Finish the jobs already queued, then end the worker."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_seconds)
            self._thread = None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def submit(self, job):
        """The job's result, computed by the worker thread; its exception is raised here."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        try:
            self._queue.put_nowait((job, future, loop))
        except queue.Full:
            raise BusyError(f"{self._queue.maxsize} requests are already waiting; retry in a moment") from None
        return await future

    def _work(self) -> None:
        while True:
            turn = self._take_turn()
            if turn is None:
                return
            if turn:
                self._run(turn)

    def _take_turn(self) -> list | None:
        """Up to `max_batch` queued jobs, waiting at most `wait_seconds` after the first; None: stop."""
        first = self._queue.get()
        if first is _STOP:
            return None
        turn, deadline = [first], time.monotonic() + self.wait_seconds
        while len(turn) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0001))
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # end after this turn
                break
            turn.append(item)
        return turn

    def _run(self, turn: list) -> None:
        self.num_turns += 1
        self.num_jobs += len(turn)
        pending = set(range(len(turn)))
        try:
            for index, result in self.run_batch([job for job, _, _ in turn]):
                pending.discard(index)
                _answer(turn[index], result)
        except Exception as error:  # a bug in run_batch must not kill the only thread that owns the model
            logger.exception("scoring turn failed")
            for index in pending:
                _answer(turn[index], error)


def _answer(item: tuple, result) -> None:
    _, future, loop = item
    try:
        loop.call_soon_threadsafe(_settle, future, result)
    except RuntimeError:  # the event loop has closed: the server is shutting down
        pass


def _settle(future: asyncio.Future, result) -> None:
    if future.done():  # the request was cancelled (its client went away)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
