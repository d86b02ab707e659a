"""ContinuousBatcher: batches close when the worker is free, not on a timer (ragcun/batching.py)."""

import asyncio
import time

import pytest

from ragcun.batching import ContinuousBatcher


class Recorder:
    """run_batch that records each batch and takes ``seconds`` (awaiting, as the replica's thread hand-off does)."""

    def __init__(self, seconds: float = 0.0, fail_on: object = None):
        self.seconds, self.fail_on, self.batches = seconds, fail_on, []

    async def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        await asyncio.sleep(self.seconds)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [item * 10 for item in items]


def test_a_lone_call_runs_at_once_alone():
    async def main():
        run = Recorder()
        batcher = ContinuousBatcher(run, max_batch_size=16)
        started = time.perf_counter()
        assert await batcher(3) == 30
        return run.batches, time.perf_counter() - started

    batches, seconds = asyncio.run(main())
    assert batches == [[3]] and seconds < 0.05


def test_calls_that_arrive_while_a_batch_runs_go_together_next_up_to_the_limit():
    async def main():
        run = Recorder(seconds=0.05)
        batcher = ContinuousBatcher(run, max_batch_size=4)
        first = asyncio.ensure_future(batcher(0))
        await asyncio.sleep(0.01)  # the first batch, [0], is now running
        rest = [asyncio.ensure_future(batcher(i)) for i in range(1, 7)]
        results = await asyncio.gather(first, *rest)
        return run.batches, results, batcher.recent_batch_sizes

    batches, results, sizes = asyncio.run(main())
    assert batches == [[0], [1, 2, 3, 4], [5, 6]]
    assert results == [i * 10 for i in range(7)] and list(sizes) == [1, 4, 2]


def test_calls_made_together_share_one_batch():
    async def main():
        run = Recorder()
        batcher = ContinuousBatcher(run, max_batch_size=8)
        return await asyncio.gather(*(batcher(i) for i in range(5))), run.batches

    results, batches = asyncio.run(main())
    assert results == [0, 10, 20, 30, 40] and batches == [[0, 1, 2, 3, 4]]


def test_wait_s_holds_an_idle_worker_for_company_until_the_batch_is_full():
    async def main():
        run = Recorder()
        batcher = ContinuousBatcher(run, max_batch_size=3, wait_s=0.2)
        started = time.perf_counter()
        first = asyncio.ensure_future(batcher(1))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(batcher(2))
        await asyncio.gather(first, second)
        waited = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(*(batcher(i) for i in range(3)))  # full at once: no wait
        return run.batches, waited, time.perf_counter() - started

    batches, waited, full = asyncio.run(main())
    assert batches == [[1, 2], [0, 1, 2]]
    assert 0.18 < waited < 1.0 and full < 0.1


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_still_runs():
    async def main():
        run = Recorder(seconds=0.02, fail_on=2)
        batcher = ContinuousBatcher(run, max_batch_size=8)
        failed = await asyncio.gather(*(batcher(i) for i in range(3)), return_exceptions=True)
        return failed, await batcher(5)

    failed, after = asyncio.run(main())
    assert all(isinstance(r, ValueError) and "bad item 2" in str(r) for r in failed) and after == 50


def test_a_wrong_number_of_results_is_an_error_not_a_silent_mismatch():
    async def short(items: list) -> list:
        return items[:-1]

    async def main():
        batcher = ContinuousBatcher(short, max_batch_size=8)
        return await asyncio.gather(batcher(1), batcher(2), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "1 results for 2 items" in str(r) for r in results)


def test_a_caller_cancelled_while_queued_is_left_out():
    async def main():
        run = Recorder(seconds=0.05)
        batcher = ContinuousBatcher(run, max_batch_size=8)
        first = asyncio.ensure_future(batcher(0))
        await asyncio.sleep(0.01)
        gone, kept = asyncio.ensure_future(batcher(1)), asyncio.ensure_future(batcher(2))
        await asyncio.sleep(0.005)
        gone.cancel()
        return await asyncio.gather(first, kept), run.batches

    results, batches = asyncio.run(main())
    assert results == [0, 20] and batches == [[0], [2]]


@pytest.mark.parametrize("kwargs", [{"max_batch_size": 0}, {"max_batch_size": 4, "wait_s": -1.0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ContinuousBatcher(Recorder(), **kwargs)
