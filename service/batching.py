"""Dynamic batching: a bounded queue per model version, dispatched at once when the model is idle.

No HTTP here. `Batcher.submit` queues one validated item and awaits its result. A batch starts
as soon as a run slot is free and the model is idle; while other batches run, a free slot waits
until `max_batch_size` items are queued or the oldest has waited `max_batch_delay_ms`. A full
queue refuses at once (`Overloaded`); an item whose caller stopped waiting (timeout or
disconnect) is dropped before it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from service.errors import DeadlineExceeded, ModelNotReady, Overloaded
from service.logs import note
from service.settings import BatchingSettings

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(slots=True)
class _Pending:
    item: Any
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    ran: tuple[int, float, float] | None = None  # batch size, queue and run seconds


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one run looked like, for metrics."""

    size: int
    queue_seconds: list[float]
    run_seconds: float


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
        self._queue: deque[_Pending] = deque()
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=limits.max_concurrent_batches, thread_name_prefix="batch"
        )
        self._idle: asyncio.Event | None = None

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Items queued plus batches running."""
        return len(self._queue) + self._running

    async def submit(self, items: list[Item], timeout: float) -> list[Result]:
        """Queue the items of one request together and wait for all their results.

        Raises Overloaded (nothing queued) if they do not all fit, DeadlineExceeded after
        `timeout`; either way none of them runs once the caller has given up.
        """
        free = self.limits.max_queue_size - len(self._queue)
        if len(items) > free:
            raise Overloaded(
                f"the queue is full ({self.limits.max_queue_size} waiting); retry shortly"
            )
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        pending = [_Pending(item, f) for item, f in zip(items, futures, strict=True)]
        self._queue.extend(pending)
        self._dispatch()
        deadline = loop.call_later(timeout, _expire, futures, timeout)
        try:
            if len(futures) == 1:
                results = [await futures[0]]
            else:
                results = list(await asyncio.gather(*futures))
            ran = [p.ran for p in pending if p.ran is not None]
            if ran:
                note(
                    batch_size=max(r[0] for r in ran),
                    queue_ms=round(max(r[1] for r in ran) * 1000, 3),
                    inference_ms=round(max(r[2] for r in ran) * 1000, 3),
                )
            return results
        finally:
            deadline.cancel()
            for future in futures:
                future.cancel()  # a no-op when done; drops the rest if one failed or we left

    async def drain(self) -> None:
        """Wait until nothing is queued or running (for unloading a version)."""
        while self.in_flight:
            self._idle = self._idle or asyncio.Event()
            await self._idle.wait()
            self._idle = None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _dispatch(self) -> None:
        """Start every batch that may start now; arm a timer for one that must wait."""
        limits = self.limits
        while self._queue and self._running < limits.max_concurrent_batches:
            while self._queue and self._queue[0].future.done():
                self._queue.popleft()  # its caller timed out or went away: never run it
            if not self._queue:
                break
            if self._running and len(self._queue) < limits.max_batch_size:
                wait = self._queue[0].enqueued + limits.max_batch_delay_ms / 1000
                wait -= time.perf_counter()
                if wait > 0:
                    if self._timer is None:
                        self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)
                    return
            self._start(self._take(limits.max_batch_size))
        self._notify_idle()

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self, n: int) -> list[_Pending]:
        batch: list[_Pending] = []
        while self._queue and len(batch) < n:
            pending = self._queue.popleft()
            if not pending.future.done():
                batch.append(pending)
        return batch

    def _start(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        self._running += 1
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._executor, self._run, [p.item for p in batch])
        work.add_done_callback(lambda done: self._finish(batch, started, done))

    def _finish(self, batch: list[_Pending], started: float, done: asyncio.Future) -> None:
        self._running -= 1
        finished = time.perf_counter()
        error = ModelNotReady("the model was unloaded") if done.cancelled() else done.exception()
        for pending in batch:
            pending.ran = (len(batch), started - pending.enqueued, finished - started)
        if error is None:
            for pending, result in zip(batch, done.result(), strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)
        else:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
        if self._on_batch is not None:
            self._on_batch(
                BatchStats(len(batch), [started - p.enqueued for p in batch], finished - started)
            )
        self._dispatch()

    def _notify_idle(self) -> None:
        if self._idle is not None and not self.in_flight:
            self._idle.set()


def _expire(futures: list[asyncio.Future], timeout: float) -> None:
    error = DeadlineExceeded(f"no result within the {timeout:g} s request timeout")
    for future in futures:
        if not future.done():
            future.set_exception(error)
