"""Dynamic batching: a bounded queue per model version, dispatched at once when the model is idle.

No HTTP here. `AdmissionQueue` is what every scheduler shares: a bounded FIFO of waiting
items, each with its caller's future and deadline; a full queue refuses at once
(`Overloaded`), and an item whose caller stopped waiting (timeout or disconnect) is dropped
before it runs. `Batcher` runs many queued items per call: a batch starts as soon as a run slot
is free and the model is idle; while other batches run, a free slot waits until
`max_batch_size` items are queued or the oldest has waited `max_batch_delay_ms`. Whatever a
run does, every caller of a batch gets an answer (a result or an error) and the next batch is
dispatched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from service.errors import (
    DeadlineExceeded,
    InternalError,
    ModelNotReady,
    Overloaded,
    ServiceError,
)
from service.logs import note
from service.phases import NO_PHASES, Phases, timed
from service.settings import BatchingSettings

Item = TypeVar("Item")
Result = TypeVar("Result")
log = logging.getLogger("rnnserve.batching")


@dataclass(slots=True, eq=False)
class Waiting(Generic[Item]):
    """One queued item and the future its caller awaits."""

    item: Item
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    ran: tuple[int, float, float] | None = None  # batch size, queue and run seconds

    @property
    def abandoned(self) -> bool:
        """Answered already, or its caller timed out or went away: never run it."""
        return self.future.done()

    def resolve(self, result: Any) -> None:
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one run looked like, for metrics and statistics."""

    size: int
    queue_seconds: list[float]
    run_seconds: float
    phases: Phases = NO_PHASES  # the run split into input, infer and output


class AdmissionQueue(Generic[Item]):
    """A bounded FIFO of items waiting to run, with one deadline per request.

    `wake` is called whenever items join, so the owner can start work at once.
    """

    def __init__(self, max_size: int, wake: Callable[[], None]) -> None:
        self.max_size = max_size
        self._wake = wake
        self._queue: deque[Waiting[Item]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Waiting[Item]]:
        return iter(self._queue)

    async def submit(self, items: list[Item], timeout: float) -> list[Any]:
        """Queue the items of one request together and wait for all their results.

        Raises Overloaded (nothing queued) if they do not all fit, DeadlineExceeded after
        `timeout`; either way none of them runs once the caller has given up.
        """
        if len(items) > self.max_size - len(self._queue):
            raise Overloaded(f"the queue is full ({self.max_size} waiting); retry shortly")
        loop = asyncio.get_running_loop()
        waiting = [Waiting(item, loop.create_future()) for item in items]
        self._queue.extend(waiting)
        self._wake()
        futures = [w.future for w in waiting]
        deadline = loop.call_later(timeout, _expire, futures, timeout)
        try:
            if len(futures) == 1:
                results = [await futures[0]]
            else:
                results = list(await asyncio.gather(*futures))
            _note_batches(waiting)
            return results
        finally:
            deadline.cancel()
            for future in futures:
                future.cancel()  # a no-op when done; drops the rest if one failed or we left

    def head(self) -> Waiting[Item] | None:
        """The oldest item whose caller still waits (abandoned ones are dropped)."""
        while self._queue and self._queue[0].abandoned:
            self._queue.popleft()
        return self._queue[0] if self._queue else None

    def popleft(self) -> Waiting[Item]:
        return self._queue.popleft()

    def take(self, n: int) -> list[Waiting[Item]]:
        """Up to `n` oldest items whose callers still wait."""
        batch: list[Waiting[Item]] = []
        while self._queue and len(batch) < n:
            waiting = self._queue.popleft()
            if not waiting.abandoned:
                batch.append(waiting)
        return batch

    def close(self, error: BaseException) -> None:
        """Answer whoever still waits with `error`; nothing more is woken."""
        self._wake = _ignore
        while self._queue:
            self._queue.popleft().fail(error)


class Batcher(Generic[Item, Result]):
    """Runs `run(items) -> results` (same order) on a worker thread, many items per call."""

    def __init__(
        self,
        run: Callable[[list[Item]], Sequence[Result]],
        limits: BatchingSettings,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self._run = run
        self.limits = limits
        self._on_batch = on_batch
        self.queue: AdmissionQueue[Item] = AdmissionQueue(limits.max_queue_size, self._dispatch)
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=limits.max_concurrent_batches, thread_name_prefix="batch"
        )
        self._idle: asyncio.Event | None = None

    @property
    def queue_depth(self) -> int:
        return len(self.queue)

    @property
    def in_flight(self) -> int:
        """Items queued plus batches running."""
        return len(self.queue) + self._running

    async def submit(self, items: list[Item], timeout: float) -> list[Result]:
        """See `AdmissionQueue.submit`."""
        return await self.queue.submit(items, timeout)

    async def drain(self) -> None:
        """Wait until nothing is queued or running (for unloading a version)."""
        while self.in_flight:
            self._idle = self._idle or asyncio.Event()
            await self._idle.wait()
            self._idle = None

    def close(self) -> None:
        """Free the worker thread and everything the run function holds."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.queue.close(ModelNotReady("the model was unloaded"))
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._run = _closed
        self._on_batch = None

    def _dispatch(self) -> None:
        """Start every batch that may start now; arm a timer for one that must wait."""
        limits = self.limits
        while self._running < limits.max_concurrent_batches:
            head = self.queue.head()
            if head is None:
                break
            if self._running and len(self.queue) < limits.max_batch_size:
                wait = head.enqueued + limits.max_batch_delay_ms / 1000 - time.perf_counter()
                if wait > 0:
                    if self._timer is None:
                        self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)
                    return
            self._start(self.queue.take(limits.max_batch_size))
        self._notify_idle()

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _start(self, batch: list[Waiting[Item]]) -> None:
        if not batch:
            return
        self._running += 1
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._executor, timed, self._run, [w.item for w in batch])
        work.add_done_callback(lambda done: self._finish(batch, started, done))

    def _finish(self, batch: list[Waiting[Item]], started: float, done: asyncio.Future) -> None:
        """Answer every caller of the batch, whatever happened, then dispatch the next."""
        self._running -= 1
        try:
            finished = time.perf_counter()
            for waiting in batch:
                waiting.ran = (len(batch), started - waiting.enqueued, finished - started)
            results, phases = _results(done, len(batch))
            for waiting, result in zip(batch, results, strict=True):
                waiting.resolve(result)
            if self._on_batch is not None:
                queued = [started - w.enqueued for w in batch]
                self._on_batch(BatchStats(len(batch), queued, finished - started, phases))
        except Exception as error:
            for waiting in batch:
                waiting.fail(_for_callers(error, len(batch)))
        finally:
            self._dispatch()

    def _notify_idle(self) -> None:
        if self._idle is not None and not self.in_flight:
            self._idle.set()


def _results(done: asyncio.Future, expected: int) -> tuple[Sequence[Any], Phases]:
    """A run's results and how its time split, or the error that stands for them."""
    if done.cancelled():
        raise ModelNotReady("the model was unloaded")
    error = done.exception()
    if error is not None:
        raise error
    results, phases = done.result()
    if len(results) != expected:
        raise InternalError(f"the model returned {len(results)} results for {expected} inputs")
    return results, phases


def _for_callers(error: Exception, size: int) -> ServiceError:
    """What the callers of a failed batch are told; a fault of ours is logged here, once."""
    if isinstance(error, ServiceError) and not isinstance(error, InternalError):
        return error  # the request's fault, or an unload: nothing for the log
    log.error("a batch of %d failed", size, exc_info=error)
    if isinstance(error, InternalError):
        return error
    return InternalError(f"the model failed on this batch ({type(error).__name__}); see the log")


def _ignore() -> None:
    pass


def _closed(items: list[Any]) -> Sequence[Any]:
    raise ModelNotReady("the model was unloaded")


def _note_batches(waiting: list[Waiting]) -> None:
    ran = [w.ran for w in waiting if w.ran is not None]
    if ran:
        note(
            batch_size=max(r[0] for r in ran),
            queue_ms=round(max(r[1] for r in ran) * 1000, 3),
            inference_ms=round(max(r[2] for r in ran) * 1000, 3),
        )


def _expire(futures: list[asyncio.Future], timeout: float) -> None:
    error = DeadlineExceeded(f"no result within the {timeout:g} s request timeout")
    for future in futures:
        if not future.done():
            future.set_exception(error)
