"""Worker processes that outlive one ``fit``: a pool per network, closed when the network goes.

Starting a worker is a Python interpreter importing NumPy and modularcnn (about 0.15 s each on an idle
machine, measured with ``scripts``-free timing in the tests' 2-core VM). A loop that calls ``fit`` once
per epoch, or ``train_on_batch`` in a loop, would pay it every call; so the pool is kept on the network
(:func:`pool_of`) and reused while it has the same number of workers. Each use sends the workers a
set-up line (network config, execution options, shared block) only when something in it changed.

The pool is closed (workers told to exit, killed if stopped or hung, shared memory unmapped) when the
network is garbage-collected or the interpreter exits (``weakref.finalize``, whose callbacks also run
at exit, after an uncaught ``KeyboardInterrupt`` too), after a failed step, and by :func:`close_pool`.
The pool holds no reference to the network, so it never keeps one alive.
"""

import json
import weakref

import numpy as np

from .. import transport
from ..replica import weight_names
from ..shared import SharedArrays
from .sharded_update import slot_layout

#: The attribute of a network that holds its pool.
_ATTRIBUTE = "_worker_pool"


def pool_of(net):
    """The network's open pool, or None."""
    pool = getattr(net, _ATTRIBUTE, None)
    return pool if pool is not None and not pool.closed else None


def close_pool(net):
    """Stop the network's workers now (a later parallel ``fit`` starts new ones)."""
    pool = getattr(net, _ATTRIBUTE, None)
    if pool is not None:
        pool.close()
        setattr(net, _ATTRIBUTE, None)


def pool_for(net, size):
    """The network's pool of ``size`` workers, started (and the old one closed) when needed."""
    pool = pool_of(net)
    if pool is not None and pool.size == size:
        return pool
    close_pool(net)
    pool = WorkerPool(size)
    setattr(net, _ATTRIBUTE, pool)
    weakref.finalize(net, pool.close)
    return pool


def block_layout(net, workers, batch_size, y_sample, update=None):
    """The shared arrays ``[(name, shape, dtype)]``: weights, each worker's gradients, loss and
    batch-statistics partials, the batch and the outputs, and with a sharded ``update``
    (:func:`.sharded_update.sharded_update`) the optimizer's state."""
    specs = [(name, layer.params[key].shape, layer.params[key].dtype)
             for name, layer, key in weight_names(net)]
    trainable = net.trainable_params()
    specs += [(f"grad{k}:{key}", value.shape, value.dtype)
              for k in range(workers) for key, value in trainable.items()]
    # A layer with batch statistics reduces at most 2 * features + 1 values at once (batch norm's
    # count, sums and the sums of its backward pass); its largest parameter has `features` values.
    from ...layers.batch_statistics import layers_with_batch_statistics  # noqa: PLC0415

    reduced = max((2 * max((v.size for v in layer.params.values()), default=0) + 1
                   for layer in layers_with_batch_statistics(net.layers)), default=1)
    specs += [(f"reduce{k}", (reduced,), np.float64) for k in range(workers)]
    specs += [("reduced", (reduced,), np.float64),
              ("x", (batch_size, *net.input_shape), net.dtype),
              ("y", (batch_size, *y_sample.shape[1:]), y_sample.dtype),
              ("outputs", (batch_size, *net.output_shape), net.dtype),
              ("loss", (workers,), np.float64)]
    specs += slot_layout(net, update)
    return [(name, tuple(int(d) for d in shape), np.dtype(dtype).str) for name, shape, dtype in specs]


class WorkerPool:
    """``size`` worker processes and the shared block they work in."""

    def __init__(self, size):
        self.size = size
        self.closed = False
        self.block = None
        self.layout = None
        self.workers = []
        self._sent = None  # the last set-up, to send it again only when it changes
        self._started = False
        try:
            # The processes first, then the shared file: a worker whose parent dies deletes the
            # parent's files, so none is left even if this process is killed in between.
            self.workers = [transport.WorkerProcess(k) for k in range(size)]
        except BaseException:
            self.close()
            raise

    @property
    def pids(self):
        """The workers' process ids."""
        return [worker.pid for worker in self.workers]

    def prepare(self, net, spec, layout):
        """Make the workers hold ``net`` (``spec`` from :func:`~modularcnn.training.replica.replica_spec`)
        in a shared block laid out as ``layout`` (from :func:`block_layout`), a new block when the
        layout changed; returns the block."""
        if self.layout != layout:
            if self.block is not None:
                self.block.close()
                self.block = None
            self.block = SharedArrays.create(layout)
            self._block_path = self.block.path  # what the workers know it by, after the unlink too
            self.layout = layout
            self._sent = None
        header = {"shared": self._block_path, "specs": self.block.specs, "spec": spec}
        text = json.dumps(header, sort_keys=True)
        if text != self._sent:
            for worker in self.workers:
                worker.send(json.dumps({**header, "worker": worker.index}))
            silence = None if self._started else transport.START_SECONDS
            for worker in self.workers:
                worker.receive(silence=silence)  # "ready"
            self._started = True
            self._sent = text
            self.block.unlink()  # every process has it mapped; nothing is left behind on a crash
        return self.block

    def _ask(self, command):
        for worker in self.workers:
            worker.send(command)
        answers = [worker.receive() for worker in self.workers]
        return [json.loads(answer.split(" ", 1)[1]) for answer in answers]

    def plans(self):
        """The kinds of steps each worker's network would run now (``[[kind, ...], ...]``)."""
        return self._ask("plan")

    def ran(self):
        """The kinds of steps each worker's last forward pass ran (None for a worker that has not
        run one since its network was built)."""
        return self._ask("ran")

    def close(self):
        """Stop the workers and release the shared block; safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        transport.stop_processes(self.workers)
        if self.block is not None:
            self.block.close()
            self.block = None
