"""Data-parallel training across processes and machines with MPI (``pip install modularcnn[mpi]``).

Run the same script on every rank (``mpirun -n 4 python train.py``, Slurm's ``srun``, or ``mpirun``
with a hostfile) and train with ``net.fit(x, y, strategy="mpi")``. Every rank holds the whole network
and the same data; each global batch (the same on every rank, because every rank draws the same seeded
shuffle) is cut into one contiguous piece per rank::

    rank r: forward, loss and backward on its rows of the batch, the loss weighted by their share
            its gradients into one flat buffer  --Allreduce(SUM, in place)-->  the batch's gradient
            the same optimizer step as every other rank (so the weights stay identical)

Batch normalization sums its per-row terms over all ranks through the same all-reduce (synchronised
batch norm: whole-batch mean, variance and gradients). The result equals one process training on the
same global batches, up to float rounding. Rank 0 alone prints progress.

MPI does the networking (mpi4py over MPICH or Open MPI); nothing here opens a socket. ``mpi4py`` is
imported only when this strategy is created; its absence gives an error naming the extra.
"""

import contextlib
import time

import numpy as np

from ...layers.batch_statistics import ONE_PROCESS, BatchReducer
from .base import DataParallelStrategy, backpropagate_rows, install_batch_reducer, split_rows


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("MPI training needs mpi4py and an MPI implementation: "
                          "pip install 'modularcnn[mpi]'") from None
    return MPI


class _AllReduceReducer(BatchReducer):
    """Batch statistics summed over every rank; each rank keeps (and updates) its own moving
    statistics, which stay identical because every rank sees the same sums."""

    updates_state = True

    def __init__(self, comm, mpi):
        self.comm, self.mpi = comm, mpi

    def sum(self, partial):
        total = np.ascontiguousarray(partial).copy()
        self.comm.Allreduce(self.mpi.IN_PLACE, total, op=self.mpi.SUM)
        return total


class MPIStrategy(DataParallelStrategy):
    """One participant per MPI rank of ``comm`` (default ``MPI.COMM_WORLD``).

    Every rank must call ``fit`` with the same data, seed and arguments. Weights are broadcast from
    rank 0 when training starts, so ranks whose networks were initialised differently agree from the
    first step.
    """

    name = "mpi"

    def __init__(self, comm=None):
        self.mpi = _mpi()
        self.comm = comm if comm is not None else self.mpi.COMM_WORLD
        super().__init__(self.comm.Get_size())
        self.rank = self.comm.Get_rank()
        #: Seconds this rank spent in the gradient all-reduce (waiting for the slowest rank included).
        self.allreduce_seconds = 0.0

    @property
    def is_chief(self):
        """Whether this rank prints progress (rank 0)."""
        return self.rank == 0

    def sum_gradients(self, partials, out):
        """This rank's gradients ``partials[0]`` summed over every rank with one in-place all-reduce
        of a single flat buffer; ``out`` maps each name to its view into that buffer."""
        flat = self._flat
        for key, view in out.items():
            np.copyto(view, partials[0][key])
        started = time.perf_counter()
        self.comm.Allreduce(self.mpi.IN_PLACE, flat, op=self.mpi.SUM)
        self.allreduce_seconds += time.perf_counter() - started
        return out

    def _broadcast_weights(self, net):
        for layer in net.layers:
            for value in layer.params.values():
                self.comm.Bcast(value, root=0)

    @contextlib.contextmanager
    def open(self, net, batch_size, y_sample):
        from ..loop import objective_of  # noqa: PLC0415 - loop imports the strategies

        objective = objective_of(net)
        self._broadcast_weights(net)
        params = net.trainable_params()
        sizes = [value.size for value in params.values()]
        self._flat = np.zeros(sum(sizes), dtype=net.dtype)
        views, offset = {}, 0
        for (key, value), size in zip(params.items(), sizes):
            views[key] = self._flat[offset:offset + size].reshape(value.shape)
            offset += size
        install_batch_reducer(net, _AllReduceReducer(self.comm, self.mpi))

        def step(x, y, sample_weight=None):
            if sample_weight is not None:
                raise ValueError("strategy='mpi' does not weigh samples yet; pass sample_weight=None")
            rows = len(x)
            lo, hi = split_rows(rows, self.workers)[self.rank]
            loss, outputs = backpropagate_rows(objective, x[lo:hi], y[lo:hi], rows)
            gradients = self.sum_gradients([net.trainable_grads()], views)
            net.optimizer.apply(net.trainable_params(), gradients)
            total = np.array([loss], dtype=np.float64)
            self.comm.Allreduce(self.mpi.IN_PLACE, total, op=self.mpi.SUM)
            return float(total[0]), self._gather_outputs(outputs, rows)

        try:
            yield step
        finally:
            install_batch_reducer(net, ONE_PROCESS)
            self._flat = None

    def _gather_outputs(self, outputs, rows):
        """Every rank's outputs, in row order: ``(rows, *output_shape)`` (metrics need the whole batch)."""
        outputs = np.ascontiguousarray(outputs)
        per_row = int(np.prod(outputs.shape[1:], dtype=np.int64))
        counts = [(hi - lo) * per_row for lo, hi in split_rows(rows, self.workers)]
        whole = np.empty((rows, *outputs.shape[1:]), dtype=outputs.dtype)
        self.comm.Allgatherv(outputs, [whole, counts])
        return whole

    def __repr__(self):
        return f"MPIStrategy(ranks={self.workers}, rank={self.rank})"
