"""Preparing batches in the background while the network computes on the previous ones.

:class:`Loader` hands a source's batches over in order. For data in memory it simply takes each batch
when asked (gathering a batch of an in-memory array costs microseconds; a thread would only add
hand-overs). For everything else it keeps a bounded window of batches in flight:

- one background thread for arrays on disk (memmap, HDF5) and iterators: reading and converting
  (NumPy releases the GIL while it copies and casts) overlaps the training step, so an epoch takes
  about max(compute, load) instead of their sum;
- ``workers`` threads, or processes with ``use_multiprocessing``, for a Sequence that asks for them in
  its constructor (as Keras 3's ``PyDataset`` does), each calling ``__getitem__`` on a different batch.

At most ``depth`` batches are prepared ahead (2 for arrays and iterators, ``min(max_queue_size,
workers + 1)`` for a Sequence), so memory stays at a few batches whatever the size of the data.
Batches come out in the order of the plan, so results do not depend on which worker finished first.
"""

import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from .sources import Exhausted, SequenceSource

#: Batches read ahead of the one in use by arrays on disk and iterators.
AHEAD = 2

_WORKER_SEQUENCE = None  # the Sequence, in a worker process


def _install_sequence(sequence):
    global _WORKER_SEQUENCE
    _WORKER_SEQUENCE = sequence


def _fetch_in_worker(key):
    return _WORKER_SEQUENCE[int(key)]


def _overrides_on_epoch_end(sequence):
    from ..utils.sequence import Sequence  # noqa: PLC0415

    method = getattr(type(sequence), "on_epoch_end", None)
    return method is not None and method is not Sequence.on_epoch_end


class Loader:
    """The batches of one source, in the order of the keys given to :meth:`batches`.

    A context manager: leaving it stops the background workers (a batch being read is finished first).
    """

    def __init__(self, source):
        self.source = source
        self.executor = None
        self.processes = False
        self.depth = 0
        # Arrays in memory (one input's, or every input's of a model with several) need no thread.
        if getattr(source, "in_memory", False):
            return
        if isinstance(source, SequenceSource):
            sequence = source.sequence
            workers = int(getattr(sequence, "workers", 1) or 1)
            self.processes = bool(getattr(sequence, "use_multiprocessing", False))
            self.depth = max(1, min(int(getattr(sequence, "max_queue_size", 10) or 10), workers + 1))
            self.workers = workers
        else:
            # An iterator must be advanced by one thread at a time, in order.
            self.workers = 1
            self.depth = AHEAD

    def _executor(self):
        if self.executor is None:
            if self.processes:
                # spawn, not fork: this process runs threads, and fork copies locks held by them.
                self.executor = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_install_sequence, initargs=(self.source.sequence,))
            else:
                self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="modularcnn-data")
        return self.executor

    def _submit(self, key):
        if self.processes:
            return self._executor().submit(_fetch_in_worker, key)
        return self._executor().submit(self.source.load, key)

    def _result(self, future, key):
        if self.processes:
            return self.source.check(future.result(), key)
        return future.result()

    def batches(self, keys):
        """Yield ``source.load(key)`` for each key, preparing up to ``depth`` ahead in the background.

        An iterator source ends early (without error) when it is exhausted.
        """
        keys = iter(keys)
        if self.depth == 0:
            for key in keys:
                try:
                    yield self.source.load(key)
                except Exhausted:
                    return
            return
        pending = deque()
        try:
            for key in keys:
                pending.append((key, self._submit(key)))
                if len(pending) >= self.depth:
                    break
            while pending:
                key, future = pending.popleft()
                try:
                    batch = self._result(future, key)
                except Exhausted:
                    return
                for more in keys:  # keep the window full: one new batch for each one handed out
                    pending.append((more, self._submit(more)))
                    break
                yield batch
        finally:
            for _, future in pending:
                future.cancel()

    def epoch_ended(self):
        """After ``on_epoch_end``: worker processes hold a copy of the Sequence, so restart them
        when ``on_epoch_end`` may have changed it."""
        if self.processes and self.executor is not None and _overrides_on_epoch_end(self.source.sequence):
            self.executor.shutdown(wait=True)
            self.executor = None

    def close(self):
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

