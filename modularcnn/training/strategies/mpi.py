"""Data-parallel training across processes and machines with MPI (``pip install modularcnn[mpi]``).

Run the same script on every rank (``mpirun -n 4 python train.py``, Slurm's ``srun``, or ``mpirun``
with a hostfile) and train with ``net.fit(x, y, strategy="mpi")``. Every rank holds the whole network
and the same data; each global batch (the same on every rank, because every rank draws the same seeded
shuffle) is cut into one contiguous piece per rank::

    rank r: forward, loss and backward on its rows of the batch, the loss weighted by their share
            (and by the rows' sample weights, which travel with them)
            its gradients into one flat buffer  --Allreduce(SUM, in place)-->  the batch's gradient
            the same optimizer step as every other rank (so the weights stay identical)
            [loss, stop requested]              --Allreduce(SUM)-->  the batch's loss; stop together

Batch normalization sums its per-row terms over all ranks through the same all-reduce (synchronised
batch norm: whole-batch mean, variance and gradients). Dropout draws its mask for the whole global
batch on every rank and keeps its own rows (:class:`_GlobalBatchDraws`), so the network's generator
stays the same on every rank and the masks are those of one process. The result equals one process
training on the same global batches, up to float rounding, for any number of ranks (a checkpoint
written under 2 ranks resumes under 1 or 4).

With ``local_workers=N`` (``fit(strategy="mpi", workers=N)``) each rank's piece is split again across
N worker processes of its machine (:mod:`.local`): their gradients and batch statistics are summed on
the rank, then over the ranks, in the same collectives.

Validation is split the same way: each rank runs inference on its rows of every validation batch,
the loss sums are all-reduced and the outputs gathered, so every rank logs the figures of one process
and callbacks such as ``EarlyStopping`` decide the same on every rank.

Rank 0 (the *chief*) alone prints progress, runs the callbacks that write files
(``Callback.writes_files``: ``ModelCheckpoint``, ``CSVLogger``) and writes the network's files: once
a network has trained with this strategy, ``net.save`` and ``net.save_weights`` write nothing on the
other ranks, as with Keras's MultiWorkerMirroredStrategy, so a script calls them on every rank.

Faults. Ctrl-C on ``mpirun`` (which passes SIGINT to every rank) is only *noted* by each rank; the
notes travel with the step's loss, so every rank stops after the same step and ``fit`` returns
``history.interrupted`` on all of them. An exception on one rank while training (in a step, a callback,
the data) would leave the others waiting in their next collective forever, so the failing rank prints
the error with its traceback, sends it to the other ranks and calls ``MPI_Abort``, which ends the whole
job with an error. Every collective is a nonblocking one whose wait watches for that message, so rank 0
prints the failure too (``modularcnn: MPI rank 1 of 4 failed, so every rank stops ...``) even when
another rank raised. A rank that dies is noticed by ``mpirun``, which ends the job too.

MPI does the networking (mpi4py over MPICH or Open MPI); nothing here opens a socket. ``mpi4py`` is
imported only when this strategy is created; its absence gives an error naming the extra.
"""

import contextlib
import signal
import sys
import threading
import time
import traceback

import numpy as np

from ...layers.base import all_layers
from ...layers.batch_statistics import ONE_PROCESS, BatchReducer
from .. import interrupt
from ..penalties import optimizer_step
from ..replica import replica_spec, unsupported_reason
from .base import DataParallelStrategy, install_batch_reducer, split_rows
from .local import _Session
from .pool import block_layout, close_pool, pool_for

#: The exit status of a job that one rank aborted.
ABORT_STATUS = 1
#: The tag of the message a failing rank sends every other rank before it aborts the job.
FAILURE_TAG = 7919
#: How long a failing rank gives the others to read its message (and rank 0 to print it) before it
#: calls MPI_Abort itself.
FAILURE_GRACE_SECONDS = 1.0
#: How long a rank waits between printing why the job stops and calling MPI_Abort: MPICH's process
#: manager forwards each rank's stderr asynchronously, and an abort tears the job down at once, so
#: on a loaded machine the messages were sometimes lost before they reached mpirun's stderr.
STDERR_DRAIN_SECONDS = 0.3
#: A wait for a collective spins this many polls before it starts sleeping between them (a rank
#: must not take the CPU from the one it waits for when the machine has fewer cores than ranks).
SPIN_POLLS = 200


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("MPI training needs mpi4py and an MPI implementation: "
                          "pip install 'modularcnn[mpi]'") from None
    return MPI


class _AllReduceReducer(BatchReducer):
    """Batch statistics summed over every rank; each rank keeps (and updates) its own moving
    statistics, which stay identical because every rank sees the same sums.

    A rank with no rows in a step still runs the step on a stand-in row (every rank must make the same
    all-reduce calls); while :attr:`silent` is set it contributes zeros, so the stand-in counts for
    nothing."""

    updates_state = True

    def __init__(self, strategy):
        self.strategy = strategy
        self.silent = False

    def sum(self, partial):
        partial = np.asarray(partial)
        total = np.zeros_like(partial) if self.silent else np.ascontiguousarray(partial).copy()
        self.strategy.allreduce(total)
        return total


#: The ``np.random.Generator`` methods :class:`_GlobalBatchDraws` widens, and the position of their
#: ``size`` argument.
_SIZE_POSITION = {"random": 0, "standard_normal": 0, "normal": 2, "uniform": 2, "binomial": 2,
                  "integers": 2, "bernoulli": 1}


class _GlobalBatchDraws:
    """Stands in for the network's generator in its layers during an MPI step.

    A layer that draws per-row randomness (Dropout's mask, ``size=x.shape``) gets, on every rank, a
    draw for the whole global batch, of which it keeps this rank's rows. So every rank advances the
    generator by the same amount (the shuffle of the next epoch stays the same on every rank), and
    the rows get the values one process would give them. Draws whose first axis is not this rank's
    row count, and everything else, go to the generator unchanged.
    """

    def __init__(self, rng):
        self._rng = rng
        #: ``(lo, hi, rows, local)`` during a step: this rank's rows ``lo:hi`` of ``rows``, and the
        #: number of rows it computes (1 for a stand-in row when ``lo == hi``).
        self.piece = None

    def __getattr__(self, name):
        method = getattr(self._rng, name)
        position = _SIZE_POSITION.get(name)
        if position is None:
            return method

        def draw(*args, **kwargs):
            piece = self.piece
            size = kwargs.get("size", args[position] if len(args) > position else None)
            if piece is None or "out" in kwargs or size is None or np.ndim(size) != 1:
                return method(*args, **kwargs)
            lo, hi, rows, local = piece
            if len(size) == 0 or int(size[0]) != local:
                return method(*args, **kwargs)
            wide = (rows,) + tuple(int(d) for d in size[1:])
            if "size" in kwargs:
                kwargs["size"] = wide
            else:
                args = args[:position] + (wide,) + args[position + 1:]
            values = method(*args, **kwargs)
            return values[lo:hi] if hi > lo else values[:1]

        return draw


class MPIStrategy(DataParallelStrategy):
    """One participant per MPI rank of ``comm`` (default ``MPI.COMM_WORLD``).

    Every rank must call ``fit`` with the same data, seed and arguments. Weights are broadcast from
    rank 0 when training starts, so ranks whose networks were initialised differently (or loaded from
    different files) agree from the first step.

    ``local_workers=N`` (``fit(strategy="mpi", workers=N)``) splits each rank's rows further across N
    worker processes on its machine, as ``strategy="local"`` does (with its limits: no sample
    weights, dropout masks drawn by the workers rather than as one process would). One rank per core
    is simpler and as fast: MPICH and Open MPI connect the ranks of one machine through shared memory.
    """

    name = "mpi"

    def __init__(self, comm=None, local_workers=1):
        from .policy import check_worker_count  # noqa: PLC0415

        #: Worker processes that share each rank's rows (1: the rank computes them itself).
        self.local_workers = check_worker_count(local_workers)
        self.mpi = _mpi()
        self.comm = comm if comm is not None else self.mpi.COMM_WORLD
        super().__init__(self.comm.Get_size())
        self.rank = self.comm.Get_rank()
        #: Seconds this rank spent in the gradient all-reduce (waiting for the slowest rank included).
        self.allreduce_seconds = 0.0
        self._flat = None

    def unsupported_reason(self, net):
        """Why ``net`` cannot train across ranks: a model with several inputs or outputs (the ranks
        exchange one output array per batch) or ``loss_weights``; with local workers, also whatever
        keeps them from rebuilding it. None when it can."""
        if getattr(net, "structured", False):
            return ("a model with several inputs or outputs trains in one process (the ranks "
                    "exchange one output array per batch)")
        if getattr(net, "loss_weights", None) not in (None, [1.0]):
            return "a model compiled with loss_weights trains in one process"
        return unsupported_reason(net) if self.local_workers > 1 else None

    @property
    def is_chief(self):
        """Whether this rank prints progress, runs the callbacks that write and saves (rank 0)."""
        return self.rank == 0

    def sum_gradients(self, partials, out):
        """This rank's gradients ``partials[0]`` summed over every rank with one in-place all-reduce
        of a single flat buffer; ``out`` maps each name to its view into that buffer."""
        flat = self._flat
        for key, view in out.items():
            np.copyto(view, partials[0][key])
        started = time.perf_counter()
        self.allreduce(flat)
        self.allreduce_seconds += time.perf_counter() - started
        return out

    def allreduce(self, buffer):
        """Sum ``buffer`` over every rank, in place."""
        self._wait(self.comm.Iallreduce(self.mpi.IN_PLACE, buffer, op=self.mpi.SUM))

    def _wait(self, request):
        """Wait for a nonblocking collective, watching for another rank's failure message: a rank
        that raised never joins this collective, so instead of waiting forever this rank reports the
        failure (rank 0 prints it) and aborts the job."""
        polls = 0
        while not request.Test():
            polls += 1
            if self.comm.Iprobe(source=self.mpi.ANY_SOURCE, tag=FAILURE_TAG):
                self._abort_for_another_rank()
            if polls > SPIN_POLLS:
                time.sleep(0.0001)

    def _abort_for_another_rank(self):
        status = self.mpi.Status()
        text = self.comm.recv(source=self.mpi.ANY_SOURCE, tag=FAILURE_TAG, status=status)
        if self.is_chief:
            sys.stderr.write(f"modularcnn: MPI rank {status.Get_source()} of {self.workers} failed, so "
                             f"every rank stops (MPI_Abort): {text}\n")
            sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(STDERR_DRAIN_SECONDS)
        self.comm.Abort(ABORT_STATUS)

    def _broadcast_weights(self, net):
        for layer in net.layers:
            for value in layer.params.values():
                self.comm.Bcast(value, root=0)

    def _check_same_job(self, net, batch_size, y_sample):
        """Raise the same ValueError on every rank when the ranks do not train the same thing (a rank
        with another network or batch size would wait in collectives no other rank makes)."""
        mine = np.array([batch_size, sum(v.size for v in net.trainable_params().values()),
                         sum(v.size for layer in net.layers for v in layer.params.values()),
                         int(np.prod(y_sample.shape[1:], dtype=np.int64)), np.dtype(net.dtype).itemsize],
                        dtype=np.int64)
        every = np.empty((self.workers, mine.size), dtype=np.int64)
        self.comm.Allgather(mine, every)
        differ = [rank for rank in range(self.workers) if not np.array_equal(every[rank], every[0])]
        if differ:
            names = "batch size, trainable values, weights, target values per row, dtype bytes"
            raise ValueError(f"strategy='mpi': every rank must fit the same network on the same data "
                             f"with the same arguments, but rank {differ[0]} has ({names}) = "
                             f"{tuple(int(v) for v in every[differ[0]])} and rank 0 "
                             f"{tuple(int(v) for v in every[0])}")

    def _piece(self, rows):
        """``(lo, hi)``: this rank's rows of a batch of ``rows``."""
        return split_rows(rows, self.workers)[self.rank]

    @contextlib.contextmanager
    def open(self, net, batch_size, y_sample):
        from ..loop import objective_of  # noqa: PLC0415 - loop imports the strategies

        objective = objective_of(net)
        self._check_same_job(net, batch_size, y_sample)
        self._broadcast_weights(net)
        # From now on this network's files are written by rank 0 alone (saving reads this).
        net._distributed_rank = self.rank
        params = net.trainable_params()
        sizes = [value.size for value in params.values()]
        self._flat = np.zeros(sum(sizes), dtype=net.dtype)
        views, offset = {}, 0
        for (key, value), size in zip(params.items(), sizes):
            views[key] = self._flat[offset:offset + size].reshape(value.shape)
            offset += size
        reducer = _AllReduceReducer(self)
        install_batch_reducer(net, reducer)
        draws = _GlobalBatchDraws(net.rng)
        drawing = [layer for layer in all_layers(net.layers) if layer.rng is net.rng]
        for layer in drawing:
            layer.rng = draws
        # A Ctrl-C that fit's own handler took before this (while the data loader started) stops
        # this rank after its first step: tell the others, so that they stop after it too.
        stops = _StopRequests(requested=interrupt.seconds_since_interrupt() is not None)
        try:
            with contextlib.ExitStack() as stack:
                if self.local_workers > 1:
                    compute = stack.enter_context(self._workers_compute(net, batch_size, y_sample))
                else:
                    compute = self._here_compute(net, objective, reducer, draws)
                stack.enter_context(stops.noting())

                def step(x, y, sample_weight=None, check_finite=False):
                    rows = len(x)
                    lo, hi = self._piece(rows)
                    value, outputs, partial = compute(x, y, sample_weight, lo, hi, rows)
                    gradients = self.sum_gradients([partial], views)
                    # Every rank takes the same step on the same summed gradients (and so gets
                    # the same weight penalty, added after the loss is summed over the ranks).
                    # The gradients are summed over the ranks, so every rank decides the same;
                    # the loss is this rank's share only, so it is left out of the check.
                    penalty = optimizer_step(net, net.trainable_params(), gradients,
                                             check_finite=check_finite)
                    # One small all-reduce carries the loss and whether any rank was asked to stop.
                    status = np.array([value, float(stops.requested)], dtype=np.float64)
                    self.allreduce(status)
                    if status[1] > 0:
                        interrupt.request_stop()  # every rank, after this same step
                    return float(status[0]) + penalty, self._gather_outputs(outputs, rows)

                yield step
        except BaseException as error:
            if self.workers > 1 and not isinstance(error, GeneratorExit):
                self.abort(error)
            raise
        finally:
            install_batch_reducer(net, ONE_PROCESS)
            for layer in drawing:
                layer.rng = net.rng
            self._flat = None

    def _here_compute(self, net, objective, reducer, draws):
        """``compute(x, y, sample_weight, lo, hi, rows) -> (loss share, outputs, gradients)`` for rows
        ``lo:hi`` of the global batch of ``rows``, in this process."""

        def compute(x, y, sample_weight, lo, hi, rows):
            # A rank without rows computes a stand-in row weighted 0 (see _AllReduceReducer).
            empty = hi == lo
            x_rows, y_rows = (x[:1], y[:1]) if empty else (x[lo:hi], y[lo:hi])
            w_rows = None if sample_weight is None or empty else np.asarray(sample_weight)[lo:hi]
            share = 0.0 if empty else (hi - lo) / rows
            reducer.silent, draws.piece = empty, (lo, hi, rows, len(x_rows))
            try:
                value, outputs = objective.backpropagate(x_rows, y_rows, weight=share,
                                                         sample_weight=w_rows)
            finally:
                reducer.silent, draws.piece = False, None
            if empty:
                # The stand-in row's own gradients are zero, but batch norm's backward pass mixes in
                # the whole batch's sums, so what reaches the layers below it is not: send zeros.
                return 0.0, outputs[:0], dict.fromkeys(net.trainable_params(), 0.0)
            return value * share, outputs, net.trainable_grads()

        return compute

    @contextlib.contextmanager
    def _workers_compute(self, net, batch_size, y_sample):
        """The same ``compute`` as :meth:`_here_compute`, with this rank's rows split across its
        ``local_workers`` worker processes (:mod:`.local`); their gradients and batch statistics are
        summed here, then over the ranks."""

        reason = unsupported_reason(net)
        if reason:
            raise ValueError(f"strategy='mpi' with {self.local_workers} local workers: this network "
                             f"trains in one process per rank only: {reason}")
        capacity = -(-batch_size // self.workers)  # the most rows a rank gets
        size = min(self.local_workers, capacity)
        pool = pool_for(net, size)
        session = None
        try:
            block = pool.prepare(net, replica_spec(net), block_layout(net, size, capacity, y_sample))
            session = _RankWorkers(self, net, pool, block)
            yield session.compute
        except BaseException:
            if session is None:
                close_pool(net)  # a failed start leaves the workers in an unknown state
            raise
        finally:
            if session is not None:
                session.unshare_weights()
                if session.broken:
                    close_pool(net)

    def evaluate_batch(self, net, objective, x, y, sample_weight=None):
        """This rank's rows of a validation batch in inference mode; returns what one process would:
        the batch's (weighted) mean loss and every row's outputs, the same on every rank."""
        rows = len(x)
        lo, hi = self._piece(rows)
        local = np.zeros(1, dtype=np.float64)
        if hi > lo:
            weights = None if sample_weight is None else np.asarray(sample_weight)[lo:hi]
            value, outputs = objective.evaluate(x[lo:hi], y[lo:hi], weights)
            local[0] = value * (hi - lo)  # the rows' loss sum: sums add up across ranks exactly
        else:
            outputs = np.empty((0, *net.output_shape), dtype=net.dtype)
        self.allreduce(local)
        return float(local[0] / rows), self._gather_outputs(outputs, rows)

    def _gather_outputs(self, outputs, rows):
        """Every rank's outputs, in row order: ``(rows, *output_shape)`` (metrics need the whole batch)."""
        outputs = np.ascontiguousarray(outputs)
        per_row = int(np.prod(outputs.shape[1:], dtype=np.int64))
        counts = [(hi - lo) * per_row for lo, hi in split_rows(rows, self.workers)]
        whole = np.empty((rows, *outputs.shape[1:]), dtype=outputs.dtype)
        self._wait(self.comm.Iallgatherv(outputs, [whole, counts]))
        return whole

    def abort(self, error):
        """End every rank of the job because this one failed with ``error``: the others may be waiting
        in a collective this rank will never join. Prints the error with its traceback (``mpirun``
        shows every rank's stderr), tells the other ranks (rank 0 prints it too, and each aborts when
        its next wait sees the message), then calls ``MPI_Abort``; does not return."""
        if isinstance(error, KeyboardInterrupt):
            reason = "was interrupted a second time (KeyboardInterrupt)"
        else:
            reason = f"raised {type(error).__name__}: {error}"
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        sys.stderr.write(f"{text}modularcnn: MPI rank {self.rank} of {self.workers} {reason}\n"
                         "modularcnn: stopping every rank of the job (MPI_Abort)\n")
        sys.stderr.flush()
        sys.stdout.flush()
        try:
            sends = [self.comm.isend(f"rank {self.rank} {reason}", dest=rank, tag=FAILURE_TAG)
                     for rank in range(self.workers) if rank != self.rank]
            deadline = time.monotonic() + FAILURE_GRACE_SECONDS
            while time.monotonic() < deadline and not self.mpi.Request.Testall(sends):
                time.sleep(0.01)
            # Rank 0 prints meanwhile, and the process manager forwards what this rank printed.
            time.sleep(max(STDERR_DRAIN_SECONDS, min(0.2, deadline - time.monotonic())))
        finally:
            self.comm.Abort(ABORT_STATUS)

    def __repr__(self):
        local = f", local_workers={self.local_workers}" if self.local_workers > 1 else ""
        return f"MPIStrategy(ranks={self.workers}, rank={self.rank}{local})"


class _StopRequests:
    """Ctrl-C while an MPI job trains: noted here, acted on by every rank after the same step.

    ``fit``'s own handler would stop this rank after its current batch, while another rank that got
    the signal a moment later trained one batch more and waited for this one forever. A second
    Ctrl-C raises ``KeyboardInterrupt`` (and so aborts the job), as in one process.
    """

    def __init__(self, requested=False):
        self.requested = requested

    @contextlib.contextmanager
    def noting(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, note)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class _RankWorkers(_Session):
    """A :class:`~.local._Session` over this rank's worker pool whose batch statistics are summed over
    the ranks too, and whose gradients go to the MPI all-reduce instead of the optimizer."""

    def __init__(self, strategy, net, pool, block):
        super().__init__(DataParallelStrategy(len(pool.workers)), net, pool, block)
        self.mpi_strategy = strategy
        self.silent = False  # this rank has no rows: its stand-in row counts for nothing

    def combine_reduction(self, total):
        if self.silent:
            total[...] = 0
        self.mpi_strategy.allreduce(total)

    def compute(self, x, y, sample_weight, lo, hi, rows):
        """Rows ``lo:hi`` of the global batch of ``rows`` on the workers: ``(loss share, outputs,
        gradients)`` as :meth:`MPIStrategy._here_compute` returns them."""
        if sample_weight is not None:
            raise ValueError("sample_weight: strategy='mpi' with local workers does not weigh "
                             "samples; use one rank per core (local_workers=1) for weighted data")
        empty = hi == lo
        x_rows, y_rows = (x[:1], y[:1]) if empty else (x[lo:hi], y[lo:hi])
        count = len(x_rows)
        if count > self.capacity:
            raise ValueError(f"a batch of {rows} rows gives this rank {count}, more than the "
                             f"{self.capacity} this strategy was opened for")
        self.silent = empty
        try:
            block = self.block
            block["x"][:count] = x_rows
            block["y"][:count] = y_rows
            pieces = split_rows(count, self.parts)
            busy = [(worker, a, b) for worker, (a, b) in zip(self.pool.workers, pieces) if b > a]
            for worker, a, b in busy:
                # Shares of the *global* batch: every worker of every rank adds up to it.
                worker.send(f"step {a} {b} {rows}")
            self._serve_reductions([worker for worker, _, _ in busy])
            total = self.strategy.sum_gradients([self.grads[worker.index] for worker, _, _ in busy],
                                                self.total)
            if empty:
                return 0.0, block["outputs"][:0].copy(), dict.fromkeys(total, 0.0)
            loss = float(sum(block["loss"][worker.index] for worker, _, _ in busy))
            return loss, block["outputs"][:count].copy(), total
        except BaseException:
            self.broken = True
            raise
        finally:
            self.silent = False
