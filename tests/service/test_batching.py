"""The batcher alone, with a fake model: no HTTP, no onnxruntime."""

import asyncio
import threading
import time

import pytest

from service.api.errors import status_of
from service.batching import Batcher, cores
from service.errors import DeadlineExceeded, InternalError, Overloaded
from service.settings import BatchingSettings
from service.tasks.classify import length_groups
from tests.waiting import wait_for_async


class SlowModel:
    """Doubles its inputs; each run takes `seconds`, and records the batches it saw."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.release.wait()
        self.batches.append(list(items))
        time.sleep(self.seconds)
        return [2 * x for x in items]


def limits(**overrides) -> BatchingSettings:
    """One run at a time unless a test says otherwise (the default is one per core)."""
    return BatchingSettings(
        **{"max_batch_size": 8, "max_batch_delay_ms": 2.0, "max_queue_size": 64,
           "max_concurrent_batches": 1, **overrides}
    )  # fmt: skip


def test_batches_of_one_model_run_side_by_side_on_the_shared_run_threads():
    """Two run slots: a second batch starts while the first runs, on the process's pool."""
    running, most = 0, 0
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=10)

    def model(items: list[int]) -> list[int]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        both.wait()  # only returns once two runs are in flight together
        with lock:
            running -= 1
        return [2 * x for x in items]

    async def scenario():
        batcher = Batcher(model, limits(max_concurrent_batches=2, max_batch_size=1))
        return await asyncio.gather(*(batcher.submit([i], timeout=10) for i in range(4)))

    assert asyncio.run(scenario()) == [[0], [2], [4], [6]]
    assert most == 2
    threads = {t.name for t in threading.enumerate() if t.name.startswith("batch")}
    assert 0 < len(threads) <= cores()


def test_an_idle_model_runs_a_request_at_once():
    async def scenario():
        batcher = Batcher(SlowModel(), limits(max_batch_delay_ms=10_000))
        # Had it waited out the 10 s batch delay, its 2 s deadline would have answered 504.
        return await batcher.submit([21], timeout=2)

    assert asyncio.run(scenario()) == [42]


def test_requests_that_arrive_while_a_batch_runs_join_the_next_batch():
    async def scenario():
        model = SlowModel(seconds=0.05)
        batcher = Batcher(model, limits())
        results = await asyncio.gather(*(batcher.submit([i], timeout=5) for i in range(20)))
        return model, results

    model, results = asyncio.run(scenario())
    assert results == [[2 * i] for i in range(20)]
    assert model.batches[0] == [0]  # dispatched at once, alone
    assert max(len(b) for b in model.batches) == 8  # then full batches
    assert len(model.batches) <= 4


def test_full_queue_answers_overloaded_at_once():
    async def scenario():
        model = SlowModel()
        model.release.clear()  # the model hangs: the queue fills
        batcher = Batcher(model, limits(max_queue_size=4, max_batch_size=2))
        waiting = [asyncio.ensure_future(batcher.submit([i], timeout=5)) for i in range(5)]
        await wait_for_async(lambda: batcher.queue_depth == 4, "one batch running, 4 queued")
        refused = batcher.submit([99], timeout=5)
        # At once: the refusal comes before the coroutine first waits for anything.
        with pytest.raises(Overloaded) as error:
            refused.send(None)
        model.release.set()
        return error.value, await asyncio.gather(*waiting)

    error, results = asyncio.run(scenario())
    assert status_of(error) == 503 and error.headers == {"Retry-After": "1"}  # over HTTP
    assert results == [[2 * i] for i in range(5)]


def test_a_request_past_its_deadline_gets_504_and_never_runs():
    async def scenario():
        model = SlowModel()
        model.release.clear()  # the first batch runs until released
        batcher = Batcher(model, limits())
        first = asyncio.ensure_future(batcher.submit([1], timeout=5))
        await wait_for_async(lambda: batcher.in_flight == 1 and batcher.queue_depth == 0)
        with pytest.raises(DeadlineExceeded):
            await batcher.submit([2], timeout=0.05)
        model.release.set()
        await first
        await batcher.drain()
        return model.batches

    assert asyncio.run(scenario()) == [[1]]


def test_a_cancelled_request_is_dropped_from_the_queue():
    async def scenario():
        model = SlowModel()
        model.release.clear()
        batcher = Batcher(model, limits())
        first = asyncio.ensure_future(batcher.submit([1], timeout=5))
        await wait_for_async(lambda: batcher.in_flight == 1 and batcher.queue_depth == 0)
        gone = asyncio.ensure_future(batcher.submit([2], timeout=5))
        stays = asyncio.ensure_future(batcher.submit([3], timeout=5))
        await wait_for_async(lambda: batcher.queue_depth == 2, "two requests queued")
        gone.cancel()  # what a client disconnect does
        model.release.set()
        await asyncio.gather(first, stays)
        return model.batches

    assert asyncio.run(scenario()) == [[1], [3]]


def test_a_failing_run_fails_only_its_own_batch():
    def flaky(items):
        if -1 in items:
            raise RuntimeError("bad batch")
        return items

    async def scenario():
        batcher = Batcher(flaky, limits())
        with pytest.raises(InternalError, match="RuntimeError"):
            await batcher.submit([-1], timeout=5)
        return await batcher.submit([5], timeout=5)

    assert asyncio.run(scenario()) == [5]


def test_length_groups_bound_padding_waste():
    lengths = [8, 250, 9, 120, 10, 240, 130, 8]
    groups = length_groups(lengths, max_batch=32, max_waste=0.25)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        sizes = [lengths[i] for i in group]
        assert 1 - sum(sizes) / (max(sizes) * len(sizes)) <= 0.25


def test_length_groups_respect_the_batch_size():
    groups = length_groups([5] * 10, max_batch=4, max_waste=0.5)
    assert [len(g) for g in groups] == [4, 4, 2]


def test_a_run_with_the_wrong_number_of_results_answers_every_caller_and_goes_on():
    def short(items):
        return items[:-1] if -1 in items else items  # one result short for a batch with -1

    async def scenario():
        batcher = Batcher(short, limits())
        failed = await asyncio.gather(
            batcher.submit([-1], timeout=5), batcher.submit([7], timeout=5), return_exceptions=True
        )
        after = await batcher.submit([5], timeout=5)
        return failed, after, batcher.in_flight

    failed, after, in_flight = asyncio.run(scenario())
    assert isinstance(failed[0], InternalError)
    assert "returned 0 results for 1 inputs" in failed[0].message
    assert after == [5] and in_flight == 0


def test_a_failing_batch_observer_still_answers_and_dispatches():
    def observer(stats):
        raise ValueError("metrics broke")

    async def scenario():
        batcher = Batcher(SlowModel(), limits(), on_batch=observer)
        first = await asyncio.wait_for(batcher.submit([1], timeout=5), 1)
        second = await asyncio.wait_for(batcher.submit([2], timeout=5), 1)
        return first, second, batcher.in_flight

    assert asyncio.run(scenario()) == ([2], [4], 0)


def test_closing_answers_whoever_still_waits():
    async def scenario():
        model = SlowModel()
        model.release.clear()
        batcher = Batcher(model, limits(max_batch_size=1))
        waiting = [asyncio.ensure_future(batcher.submit([i], timeout=5)) for i in range(3)]
        await wait_for_async(lambda: batcher.queue_depth == 2, "one running (hung), two queued")
        batcher.close()
        model.release.set()
        return await asyncio.gather(*waiting, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert [type(a).__name__ for a in answers[1:]] == ["ModelNotReady", "ModelNotReady"]
