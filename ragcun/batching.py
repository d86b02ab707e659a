"""Continuous batching of concurrent calls for the Serve replica's encoder.

Ray Serve's ``@serve.batch`` closes a batch ``batch_wait_timeout_s`` after its first call arrives, even when the
encoder is idle and nothing else is coming, so a lone query always pays the whole wait; and it closes each batch
before the previous one has finished, so queries that arrive during a long batch do not join each other.
:class:`ContinuousBatcher` closes a batch when the encoder becomes free instead (the scheme of Hugging Face's
text-embeddings-inference): a call that finds it idle runs at once, alone; calls that arrive while a batch runs
queue and go together, up to ``max_batch_size``, as soon as it ends. Batches therefore grow with the load and
cost no latency without it. ``wait_s`` > 0 still holds an idle encoder that long for company, for users who want
fuller batches at moderate load.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class ContinuousBatcher(Generic[Item, Result]):
    """``await batcher(item)`` returns ``run_batch([..., item, ...])``'s entry for ``item``.

    ``run_batch`` takes a list of items and returns one result per item, in order; one batch runs at a time. If
    it raises, every caller in that batch gets the exception. Callers that were cancelled while queued (a client
    that went away) are left out of the batch. Must be called from one event loop."""

    def __init__(self, run_batch: Callable[[list[Item]], Awaitable[list[Result]]], max_batch_size: int,
                 wait_s: float = 0.0):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if wait_s < 0:
            raise ValueError(f"wait_s must be >= 0, got {wait_s}")
        self.run_batch, self.max_batch_size, self.wait_s = run_batch, max_batch_size, wait_s
        self._queue: deque[tuple[Item, asyncio.Future]] = deque()
        self._full = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self.recent_batch_sizes: deque[int] = deque(maxlen=1000)  # for /info, tests and benchmarks

    async def __call__(self, item: Item) -> Result:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if len(self._queue) >= self.max_batch_size:
            self._full.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            if self.wait_s > 0 and len(self._queue) < self.max_batch_size:
                self._full.clear()
                try:
                    await asyncio.wait_for(self._full.wait(), self.wait_s)
                except asyncio.TimeoutError:
                    pass
            taken = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch_size))]
            batch = [(item, future) for item, future in taken if not future.done()]
            if not batch:
                continue
            self.recent_batch_sizes.append(len(batch))
            try:
                results = await self.run_batch([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
