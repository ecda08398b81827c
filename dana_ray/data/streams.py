"""Each logical worker's seeded stream of batches.

Batch k of logical worker i is fixed by (seed, i, k) alone: the worker's passes over the training set are
seeded permutations keyed by (seed, i, pass), and batch k's augmentation draws from a generator keyed by
(seed, i, k). So a stream position is one integer, a batch can be recomputed anywhere (any actor, after any
restart), and runs are reproducible.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from dana_ray.data.sets import ImageSet

_STREAM_TAG = 11
_AUGMENT_TAG = 12


class WorkerStream:
    """Logical worker ``worker``'s endless, seeded stream of training batches, addressed by batch number.

    Passes over the data are independent permutations (the last partial batch of a pass is dropped), so
    ``batch(k)`` depends only on (seed, worker, k).
    """

    def __init__(self, data: ImageSet, batch_size: int, seed: int, worker: int, augment: bool = True) -> None:
        if batch_size > len(data):
            raise ValueError(f"batch_size: {batch_size} is larger than the training set ({len(data)} examples)")
        self.data, self.batch_size, self.seed, self.worker, self.augment = data, batch_size, seed, worker, augment
        self.batches_per_pass = len(data) // batch_size
        self._permutation: tuple[int, np.ndarray] = (-1, np.arange(0))  # (pass, order), replaced in one store

    def indices(self, k: int) -> np.ndarray:
        pass_, j = divmod(k, self.batches_per_pass)
        cached, order = self._permutation  # one read: a prefetch thread may replace it meanwhile
        if pass_ != cached:
            order = np.random.default_rng([self.seed, _STREAM_TAG, self.worker, pass_]).permutation(len(self.data))
            self._permutation = (pass_, order)
        return order[j * self.batch_size : (j + 1) * self.batch_size]

    def batch(self, k: int) -> tuple[Tensor, Tensor]:
        generator = None
        if self.augment:
            key = np.random.SeedSequence([self.seed, _AUGMENT_TAG, self.worker, k]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(key) >> 1)
        return self.data.batch(self.indices(k), generator)


class Streams:
    """Every logical worker's stream, for one gradient actor, with batches prepared ahead.

    A data set whose batches are slow to make (``slow_batches = True``: decoded from files) gets a background
    thread that prepares up to ``prefetch`` batches while the model computes: the next batch of each of the
    workers served longest ago (in round robin, exactly the next jobs; with one worker per actor, that
    worker's next batch). A batch is the same whether prefetched or made on demand (a function of (seed,
    worker, batch) only), so prefetching never changes a number; a prefetched batch that is not the one a job
    asks for (after a restore) is dropped.
    """

    def __init__(self, data: ImageSet, batch_size: int, seed: int, prefetch: int = 2) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.prefetch = prefetch if getattr(data, "slow_batches", False) else 0
        self._streams: dict[int, WorkerStream] = {}
        self._next: dict[int, int] = {}  # worker -> its next batch, least recently served first
        self._pending: dict[int, tuple[int, Future]] = {}  # worker -> (batch, its preparation)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="prefetch") if self.prefetch else None
        self.waited_s = 0.0  # time spent in ``batch`` (waiting for, or making, batches)

    def stream(self, worker: int) -> WorkerStream:
        if worker not in self._streams:
            self._streams[worker] = WorkerStream(self.data, self.batch_size, self.seed, worker)
        return self._streams[worker]

    def batch(self, worker: int, k: int) -> tuple[Tensor, Tensor]:
        """Batch ``k`` of logical worker ``worker``; then the preparation of the next ones starts."""
        started = time.perf_counter()
        pending = self._pending.pop(worker, None)
        if pending is not None and pending[0] == k:
            out = pending[1].result()
        else:
            out = self.stream(worker).batch(k)
        self._next.pop(worker, None)
        self._next[worker] = k + 1
        self._prepare()
        self.waited_s += time.perf_counter() - started
        return out

    def _prepare(self) -> None:
        if self._thread is None:
            return
        for worker, k in self._next.items():
            if len(self._pending) >= self.prefetch:
                break
            if worker not in self._pending:
                self._pending[worker] = (k, self._thread.submit(self.stream(worker).batch, k))

    def close(self) -> None:
        """Stop the background thread (batches being prepared are dropped)."""
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)
            self._thread, self._pending = None, {}


def eval_batches(data: ImageSet, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The whole split in order, unaugmented."""
    for start in range(0, len(data), batch_size):
        yield data.batch(np.arange(start, min(start + batch_size, len(data))), None)
