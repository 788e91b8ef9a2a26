"""Data-parallel training: every batch is split across worker processes, one per CPU core.

Why processes and not threads: NumPy runs each operation on one core, and two Python threads hand the
GIL to each other around every NumPy call. A training step is hundreds of calls of tens of
microseconds, and measured here two threads running them were *slower* than one. Separate processes
share nothing but memory, so ``fit(workers=N)`` starts N workers (``python -m
modularcnn.training.worker``), each with a one-thread BLAS and its own copy of the network whose weights
live in memory shared with this process (:class:`~modularcnn.training.shared.SharedArrays`)::

    this process                                  worker k (rows lo_k:hi_k of every batch)
    write the batch into shared memory  --step-->  forward, loss and backward on its rows;
    wait                                <--done--  its gradients into shared memory, scaled by its
                                                   share of the rows
    sum the gradients, optimizer step on the shared weights (every worker sees them at once)

Every built-in loss is a mean over the batch, so the worker gradients, each scaled by rows/batch, add
up to the gradient of the whole batch: training takes the same path as in one process, up to float
rounding (it is deterministic for a given number of workers). Validation, callbacks, ``predict`` and
``evaluate`` run in this process as usual.

Networks with batch normalization (its statistics are over the whole batch), custom layers or losses
(a worker cannot import them) train in one process.
"""

import json
import os
import select
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np

from .. import losses
from .objective import Objective
from .shared import SharedArrays

#: ``workers="auto"`` starts workers only for fits of at least this many batches: starting them takes
#: about 0.15 s (a Python interpreter importing NumPy and modularcnn, each).
AUTO_MIN_STEPS = 200
#: ... and only while every worker gets at least this many rows of a batch.
AUTO_MIN_ROWS = 16
#: How long a worker polls for its next step before it blocks (see ``_LineReader``). It covers the
#: other workers finishing and the optimizer step: with 2 ms, a busy machine often ran past it, and
#: sending the next step cost the main process 0.3 ms of waking workers (cnn32: 13.5 against 13.1 ms
#: per step with 5 ms).
SPIN_SECONDS = 0.005
#: How a worker process is started (tests replace it to simulate failing workers).
WORKER_COMMAND = (sys.executable, "-m", "modularcnn.training.worker")
#: glibc's allocator gives freed memory at the top of its heap back to the system once more than a
#: threshold is free, and each multi-megabyte array of the next step then takes a page fault per
#: 4 KiB when first written: measured, 740 faults and an eighth of a cnn32 step. A worker's arrays
#: have the same sizes every step, so it keeps them (arrays below 32 MiB come from the heap, which is
#: trimmed only above 256 MiB free). Other allocators ignore these variables.
_MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
                    "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20)}
_BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                          "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class WorkerError(RuntimeError):
    """A worker process failed or exited; the message carries its error."""


def available_cores():
    """CPU cores this process may use: ``OMP_NUM_THREADS`` (or the BLAS's own variable) when set,
    else the CPUs it is allowed to run on."""
    for variable in _BLAS_THREAD_VARIABLES[:3]:
        value = os.environ.get(variable, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _all_layers(layers):
    for layer in layers:
        yield layer
        yield from _all_layers(layer.sublayers)


def unsupported_reason(net):
    """Why ``net`` cannot train with workers, or None when it can."""
    for layer in _all_layers(net.layers):
        if not layer.samples_independent:
            return (f"layer {layer.name!r} ({type(layer).__name__}) needs statistics over the "
                    "whole batch")
        if not type(layer).__module__.startswith("modularcnn."):
            return f"layer {layer.name!r} is a custom {type(layer).__name__}, which a worker cannot import"
    if not type(net.loss).__module__.startswith("modularcnn."):
        return f"the loss {type(net.loss).__name__} is custom, which a worker cannot import"
    if not sys.executable:
        return "sys.executable is unknown, so no worker process can be started"
    return None


def resolve_workers(net, workers, batch_size, steps):
    """The number of worker processes ``fit`` uses: 0 (train here) or at least 2.

    ``workers`` is ``"auto"`` (use every core for long enough fits of supported networks), 1 (this
    process only) or an int >= 2 (raises ``ValueError`` when the network cannot be split).
    """
    if workers == "auto":
        cores = min(available_cores(), batch_size // AUTO_MIN_ROWS)
        if cores < 2 or steps < AUTO_MIN_STEPS or unsupported_reason(net):
            return 0
        return cores
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be 'auto' or a positive int, got {workers!r}")
    if workers == 1:
        return 0
    reason = unsupported_reason(net)
    if reason:
        raise ValueError(f"workers={workers}: this network trains in one process only: {reason}")
    return workers


def _split(rows, parts):
    """``[(lo, hi)]``: ``rows`` cut into ``parts`` contiguous, nearly equal pieces (some may be empty)."""
    bounds = [rows * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _weights(net):
    """``(shared name, layer, key)`` for every array in the layers' ``params``."""
    return [(f"param:{layer.name}/{key}", layer, key) for layer in net.layers for key in layer.params]


def _layout(net, workers, batch_size, y_sample):
    """The shared arrays: weights, each worker's gradients and loss, the batch and the outputs."""
    specs = [(name, layer.params[key].shape, layer.params[key].dtype)
             for name, layer, key in _weights(net)]
    trainable = net.trainable_params()
    specs += [(f"grad{k}:{key}", value.shape, value.dtype)
              for k in range(workers) for key, value in trainable.items()]
    specs += [("x", (batch_size, *net.input_shape), net.dtype),
              ("y", (batch_size, *y_sample.shape[1:]), y_sample.dtype),
              ("outputs", (batch_size, *net.output_shape), net.dtype),
              ("loss", (workers,), np.float64)]
    return specs


class _Worker:
    """One worker process and the line protocol on its stdin/stdout."""

    def __init__(self, index):
        self.index = index
        env = dict(os.environ)
        env.update(dict.fromkeys(_BLAS_THREAD_VARIABLES, "1"))  # one core per worker
        env.update(_MALLOC_SETTINGS)
        options = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        # Its own session: Ctrl-C reaches only this process, which stops after the current batch.
        self.process = subprocess.Popen(list(WORKER_COMMAND),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                        **options)

    def send(self, message):
        try:
            self.process.stdin.write((message + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            self._raise_exited()

    def receive(self):
        line = self.process.stdout.readline().decode().rstrip("\n")
        if not line:
            self._raise_exited()
        if line.startswith("error "):
            raise WorkerError(f"worker {self.index} failed: {json.loads(line[6:])}")
        return line

    def _raise_exited(self):
        code = self.process.wait(timeout=5)
        raise WorkerError(f"worker {self.index} exited unexpectedly with code {code}")

    def stop(self):
        try:
            self.process.stdin.close()  # end of input: the worker's loop ends and it exits
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            self.process.stdout.close()


class DataParallel:
    """Trains ``net`` with ``workers`` processes; a context manager around ``fit``'s epochs.

    While it is open, the network's weights live in shared memory (``layer.params`` hold views of it);
    on exit they are copied back into ordinary arrays and the workers stop.
    """

    def __init__(self, net, workers, batch_size, y_sample):
        self.net = net
        self.workers = []
        self.shared = SharedArrays.create(_layout(net, workers, batch_size, y_sample))
        try:
            self._share_weights()
            self.workers = [_Worker(k) for k in range(workers)]
            header = {"shared": self.shared.path, "specs": self.shared.specs,
                      "net": net.get_config(), "loss": losses.serialize(net.loss),
                      "seed": net.seed, "worker": 0}
            for worker in self.workers:
                worker.send(json.dumps({**header, "worker": worker.index}))
            for worker in self.workers:
                worker.receive()  # "ready"
            self.shared.unlink()  # every process has it mapped; nothing is left behind on a crash
        except BaseException:
            self.close()
            raise
        self.params = self.net.trainable_params()
        self.grads = [{key: self.shared[f"grad{k}:{key}"] for key in self.params}
                      for k in range(workers)]
        self.total = {key: np.empty_like(value) for key, value in self.params.items()}

    def _share_weights(self):
        for name, layer, key in _weights(self.net):
            np.copyto(self.shared[name], layer.params[key])
            layer.params[key] = self.shared[name]

    def _unshare_weights(self):
        for _, layer, key in _weights(self.net):
            layer.params[key] = np.array(layer.params[key])

    def train_step(self, x_batch, y_batch):
        """One optimisation step on the batch; returns ``(loss, outputs)`` like ``train_step``."""
        rows = len(x_batch)
        self.shared["x"][:rows] = x_batch
        self.shared["y"][:rows] = y_batch
        pieces = _split(rows, len(self.workers))
        busy = [(worker, lo, hi) for worker, (lo, hi) in zip(self.workers, pieces) if hi > lo]
        for worker, lo, hi in busy:
            worker.send(f"step {lo} {hi} {rows}")
        for worker, _, _ in busy:
            worker.receive()
        grads = [self.grads[worker.index] for worker, _, _ in busy]
        total = grads[0]  # the optimizer only reads the gradients
        if len(grads) > 1:
            total = self.total
            for key, summed in total.items():
                np.add(grads[0][key], grads[1][key], out=summed)
                for more in grads[2:]:
                    summed += more[key]
        self.net.optimizer.apply(self.params, total)
        loss = float(sum(self.shared["loss"][worker.index] for worker, _, _ in busy))
        return loss, self.shared["outputs"][:rows].copy()

    def close(self):
        for worker in self.workers:
            worker.stop()
        self.workers = []
        self._unshare_weights()
        self.shared.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------------
# The worker side (run by ``python -m modularcnn.training.worker``)
# ------------------------------------------------------------------------------------------------

def _worker_network(header, shared):
    from ..net import Net  # noqa: PLC0415 - the worker imports the network only when it starts

    net = Net.from_config(header["net"])
    seed = header["seed"]
    # Dropout draws from this generator: seeded per worker, so a seeded fit repeats exactly.
    net.rng = np.random.default_rng(None if seed is None else [seed, header["worker"]])
    for layer in net.layers:
        layer.rng = net.rng
    for name, layer, key in _weights(net):
        layer.params[key] = shared[name]
    net.compile(optimizer="sgd", loss=losses.get(header["loss"]), metrics=())
    return net


def _worker_step(net, objective, shared, grads, index, lo, hi, rows):
    share = (hi - lo) / rows  # the loss is a mean over these rows: weigh it by their share
    value, outputs = objective.backpropagate(shared["x"][lo:hi], shared["y"][lo:hi], weight=share)
    for key, gradient in net.trainable_grads().items():
        np.copyto(grads[key], gradient)
    shared["outputs"][lo:hi] = outputs
    shared["loss"][index] = value * share


class _LineReader:
    """Lines from a file descriptor. Between steps it polls for up to ``spin`` seconds before blocking:
    the next step usually comes within a millisecond, and a process that blocked sleeps and takes
    0.1-0.3 ms to wake (measured in a 2-core VM), a tenth of a LeNet step."""

    def __init__(self, fd, spin):
        self.fd, self.spin, self.buffer = fd, spin if os.name == "posix" else 0, b""

    def readline(self):
        while b"\n" not in self.buffer:
            if self.spin:
                deadline = time.perf_counter() + self.spin
                while not select.select([self.fd], [], [], 0)[0] and time.perf_counter() < deadline:
                    os.sched_yield()  # let the training process run its update meanwhile
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return ""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


def worker_main(stdin=sys.stdin, stdout=sys.stdout):
    """Serve ``step lo hi rows`` lines until the input ends; each answered ``done`` or ``error ...``."""
    warnings.simplefilter("ignore")  # this process's warnings were already shown by the main one

    def reply(text):
        stdout.write(text + "\n")
        stdout.flush()

    reader = _LineReader(stdin.fileno(), SPIN_SECONDS)
    try:
        header = json.loads(reader.readline())
        shared = SharedArrays.attach(header["shared"], header["specs"])
        index = header["worker"]
        net = _worker_network(header, shared)
        objective = Objective(net)
        grads = {key: shared[f"grad{index}:{key}"] for key in net.trainable_params()}
    except Exception:  # noqa: BLE001 - whatever it is, the main process must hear of it
        reply("error " + json.dumps(traceback.format_exc(limit=3)))
        return
    reply("ready")
    while line := reader.readline():
        try:
            _, lo, hi, rows = line.split()
            _worker_step(net, objective, shared, grads, index, int(lo), int(hi), int(rows))
        except Exception:  # noqa: BLE001
            reply("error " + json.dumps(traceback.format_exc(limit=3)))
            continue
        reply("done")
