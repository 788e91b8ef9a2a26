"""Data-parallel training over worker processes on this machine, one per CPU core.

Why processes and not threads: NumPy runs each operation on one core, and two Python threads hand the
GIL to each other around every NumPy call. A training step is hundreds of calls of tens of
microseconds, and measured here two threads running them were *slower* than one. Separate processes
share nothing but memory, so :class:`LocalWorkers` keeps N workers (:mod:`modularcnn.training.worker`),
each with a one-thread BLAS and its own copy of the network whose weights live in memory shared with
this process (:class:`~modularcnn.training.shared.SharedArrays`)::

    this process                                  worker k (rows lo_k:hi_k of every batch)
    write the batch into shared memory  --step-->  forward, loss and backward on its rows;
    (sum batch statistics  <--reduce/reduced-->    batch norm's sums over the whole batch)
    wait                                <--done--  its gradients into shared memory, scaled by its
                                                   share of the rows
    sum the gradients, optimizer step on the shared weights (every worker sees them at once)
    or, for a large network and an element-wise optimizer (:mod:`.sharded_update`):
    "update <lr> <step> <busy>"        --update-->  sum and update its own ranges of the weights
    wait                               <--updated-- and of the optimizer's state (shared too)

Training takes the same path as in one process, up to float rounding (it is deterministic for a given
number of workers). Validation, callbacks, ``predict`` and ``evaluate`` run in this process as usual.
The workers belong to the network's :class:`~modularcnn.training.strategies.pool.WorkerPool` and serve
later ``fit`` and ``train_on_batch`` calls too.
"""

import contextlib

import numpy as np

from ...errors import NonFiniteLossError
from ..penalties import apply_constraints, optimizer_step
from ..replica import replica_spec, unsupported_reason, weight_names
from ..transport import WorkerError
from .base import DataParallelStrategy, split_rows
from .pool import block_layout, close_pool, pool_for
from .sharded_update import share_state, sharded_update, unshare_state
from .single import _check_no_sample_weight


class LocalWorkers(DataParallelStrategy):
    """Split every batch across ``workers`` processes on this machine (at least 1).

    Networks that cannot be rebuilt in a worker (:func:`~modularcnn.training.replica.unsupported_reason`)
    are refused with a ``ValueError`` when the strategy opens.
    """

    name = "local"

    def __init__(self, workers):
        from .policy import check_worker_count  # noqa: PLC0415

        super().__init__(check_worker_count(workers))

    def unsupported_reason(self, net):
        return unsupported_reason(net)

    @contextlib.contextmanager
    def open(self, net, batch_size, y_sample):
        reason = self.unsupported_reason(net)
        if reason:
            raise ValueError(f"workers={self.workers}: this network trains in one process only: "
                             f"{reason}")
        from ..loop import objective_of  # noqa: PLC0415 - loop imports the strategies

        objective_of(net)  # compiled, with the defaults when compile() was not called
        size = min(self.workers, batch_size)  # more workers than rows would only wait
        pool = pool_for(net, size)
        session = None
        try:
            update = sharded_update(net, size)
            block = pool.prepare(net, {**replica_spec(net), "update": update},
                                 block_layout(net, size, batch_size, y_sample, update))
            session = _Session(self, net, pool, block, update)
            yield session.step
        except BaseException:
            if session is None:
                close_pool(net)  # a failed start leaves the workers in an unknown state
            raise
        finally:
            if session is not None:
                session.unshare_weights()
                if session.broken:
                    close_pool(net)  # ... and so does a failed step


class _Session:
    """One ``open`` of a pool: the network's weights live in the shared block until it ends."""

    def __init__(self, strategy, net, pool, block, update=None):
        self.strategy, self.net, self.pool, self.block = strategy, net, pool, block
        self.broken = False
        self.parts = len(pool.workers)
        for name, layer, key in weight_names(net):
            np.copyto(block[name], layer.params[key])
            layer.params[key] = block[name]
        self.params = net.trainable_params()
        self.grads = [{key: block[f"grad{k}:{key}"] for key in self.params} for k in range(self.parts)]
        self.total = {key: np.empty_like(value) for key, value in self.params.items()}
        self.capacity = block["x"].shape[0]
        # With a sharded update the workers run the optimizer step on the state in the block.
        self.optimizer = net.optimizer
        self.shared_slots = update["slots"] if update else None
        if self.shared_slots:
            share_state(self.optimizer, block, self.shared_slots)

    def unshare_weights(self):
        for _, layer, key in weight_names(self.net):
            layer.params[key] = np.array(layer.params[key])
        if self.shared_slots:
            unshare_state(self.optimizer, self.block, self.shared_slots)

    def step(self, x, y, sample_weight=None, check_finite=False):
        """One optimisation step on the batch; returns ``(loss, outputs)`` (``check_finite``: see
        :func:`~modularcnn.training.penalties.optimizer_step`)."""
        _check_no_sample_weight(sample_weight)
        rows = len(x)
        if rows > self.capacity:
            raise ValueError(f"a batch of {rows} rows, more than the {self.capacity} this strategy "
                             "was opened for")
        try:
            return self._step(x, y, rows, check_finite)
        except NonFiniteLossError:
            raise  # every worker answered: the pool is fine, only the data is not
        except BaseException:
            self.broken = True
            raise

    def _step(self, x, y, rows, check_finite):
        block = self.block
        block["x"][:rows] = x
        block["y"][:rows] = y
        pieces = split_rows(rows, self.parts)
        busy = [(worker, lo, hi) for worker, (lo, hi) in zip(self.pool.workers, pieces) if hi > lo]
        for worker, lo, hi in busy:
            worker.send(f"step {lo} {hi} {rows}")
        self._serve_reductions([worker for worker, _, _ in busy])
        loss = float(sum(block["loss"][worker.index] for worker, _, _ in busy))
        if self.shared_slots and not check_finite and self.net.optimizer is self.optimizer:
            self._update_in_workers([worker.index for worker, _, _ in busy])
            return loss, block["outputs"][:rows].copy()   # no weight penalty: none is regularized
        total = self.strategy.sum_gradients([self.grads[worker.index] for worker, _, _ in busy],
                                            self.total)
        # The weight penalties' value and gradient once, on the summed gradients (not per worker).
        penalty = optimizer_step(self.net, self.params, total, check_finite=check_finite, loss=loss)
        return loss + penalty, block["outputs"][:rows].copy()

    def _update_in_workers(self, busy):
        """The optimizer step, each worker on its share (:mod:`.sharded_update`); then, as
        :func:`~modularcnn.training.penalties.optimizer_step` does, the constraints."""
        optimizer = self.optimizer
        share_state(optimizer, self.block, self.shared_slots)  # set_state may have replaced it
        command = (f"update {float(optimizer.current_learning_rate)!r} {optimizer.iterations} "
                   + ",".join(map(str, busy)))
        for worker in self.pool.workers:
            worker.send(command)
        for worker in self.pool.workers:
            answer = worker.receive()
            if answer != "updated":
                raise WorkerError(f"expected 'updated' from worker {worker.index}, got {answer!r}")
        optimizer.iterations += 1
        apply_constraints(self.net, self.params)

    def _serve_reductions(self, busy):
        """Wait for every busy worker's ``done``, summing batch statistics when they ask."""
        block = self.block
        while True:
            answers = [worker.receive() for worker in busy]
            if all(answer == "done" for answer in answers):
                return
            if len(set(answers)) != 1 or not answers[0].startswith("reduce "):
                raise WorkerError(f"the workers disagree in mid-step: {answers}")
            size = int(answers[0].split()[1])
            total = block["reduced"][:size]
            np.copyto(total, block[f"reduce{busy[0].index}"][:size])
            for worker in busy[1:]:
                total += block[f"reduce{worker.index}"][:size]
            self.combine_reduction(total)
            for worker in busy:
                worker.send("reduced")

    def combine_reduction(self, total):
        """Turn the workers' summed batch statistics ``total`` into the whole batch's, in place: they
        already are here; under MPI the ranks' sums are added (:mod:`.mpi`)."""
