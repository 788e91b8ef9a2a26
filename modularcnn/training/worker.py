"""The data-parallel worker program: ``python -m modularcnn.training.worker``.

Started by :class:`modularcnn.training.strategies.pool.WorkerPool`, which talks to it over stdin/stdout
(the protocol: :mod:`modularcnn.training.transport`). The worker holds a copy of the network
(:func:`~modularcnn.training.replica.build_replica`) whose weights are views of the shared block, so
the optimizer step of the training process is seen here at once; for each step it computes the
gradient of its rows, weighted by their share of the batch, into its own gradient arrays. Layers with
batch statistics sum them over all workers through :class:`ParentReducer`.

A worker lives as long as its pool: several ``fit`` calls, each of which may send a new set-up (another
network config, other execution options, a new shared block). When its input ends it exits; if that
is because the training process died, it first deletes the shared files that process left.
"""

import json
import os
import sys
import time
import traceback
import warnings

import numpy as np

from ..layers.batch_statistics import BatchReducer
from .objective import objective_for
from .replica import apply_execution_options, build_replica, plan_kinds, ran_kinds, weight_names
from .shared import SharedArrays, remove_files_of
from .strategies.base import backpropagate_rows, install_batch_reducer
from .strategies.sharded_update import WorkerUpdate


class ParentReducer(BatchReducer):
    """Sums a layer's partial batch statistics over every busy worker, through the training process.

    The worker writes its partial sums into its ``reduce<k>`` array and says ``reduce N``; the training
    process adds every worker's arrays in worker order (the same sum on every run) into ``reduced``
    and answers ``reduced``. Only worker 0 writes the shared moving statistics.
    """

    def __init__(self, channel, shared, index):
        self.channel, self.index = channel, index
        self.partial, self.total = shared[f"reduce{index}"], shared["reduced"]
        self.updates_state = index == 0

    def sum(self, partial):
        size = partial.size
        if size > self.partial.size:
            raise ValueError(f"a layer reduced {size} values, more than the {self.partial.size} the "
                             "pool made room for")
        self.partial[:size] = partial.ravel()
        self.channel.reply(f"reduce {size}", busy=True)
        answer = self.channel.readline()
        if answer != "reduced":
            raise RuntimeError(f"expected 'reduced' from the training process, got {answer!r}")
        return self.total[:size].reshape(partial.shape).astype(partial.dtype)


class WorkerState:
    """The worker's network, its view of the shared block and the set-up they came from."""

    def __init__(self, channel):
        self.channel = channel
        self.shared = self.net = self.objective = None
        self.network_key = None

    def setup(self, header):
        """Apply a set-up: rebuild the network when its config or loss changed, map a new shared
        block when there is one, and point the weights at it."""
        index = self.index = header["worker"]
        key = json.dumps([header["spec"]["net"], header["spec"]["loss"], header["spec"]["seed"]],
                         sort_keys=True)
        if key != self.network_key:
            self.net = build_replica(header["spec"], worker=index)
            self.objective = objective_for(self.net)
            self.network_key = key
        if self.shared is None or self.shared.path != header["shared"]:
            if self.shared is not None:
                self.shared.close()
            self.shared = SharedArrays.attach(header["shared"], header["specs"])
        shared, net = self.shared, self.net
        for name, layer, key in weight_names(net):
            layer.params[key] = shared[name]
        apply_execution_options(net, header["spec"]["options"])
        install_batch_reducer(net, ParentReducer(self.channel, shared, index))
        self.grads = {key: shared[f"grad{index}:{key}"] for key in net.trainable_params()}
        update = header["spec"].get("update")
        self.update = update and WorkerUpdate(update, index, shared, net.trainable_params())

    def step(self, lo, hi, rows):
        """Forward, loss and backward on rows ``lo:hi`` of the batch, weighted by their share."""
        shared = self.shared
        value, outputs = backpropagate_rows(self.objective, shared["x"][lo:hi], shared["y"][lo:hi],
                                            rows)
        for key, gradient in self.net.trainable_grads().items():
            np.copyto(self.grads[key], gradient)
        shared["outputs"][lo:hi] = outputs
        shared["loss"][self.index] = value


def _serve(channel, state):
    """Answer commands until ``exit``; returns False when the input ended without it."""
    while line := channel.readline():
        if line == "exit":
            return True
        channel.busy()
        try:
            if line.startswith("{"):
                state.setup(json.loads(line))
                answer = "ready"
            elif line.startswith("step "):
                _, lo, hi, rows = line.split()
                state.step(int(lo), int(hi), int(rows))
                answer = "done"
            elif line.startswith("update "):
                _, lr, iterations, busy = line.split()
                state.update(float(lr), int(iterations), [int(k) for k in busy.split(",")])
                answer = "updated"
            elif line == "plan":
                answer = "plan " + json.dumps(plan_kinds(state.net))
            elif line == "ran":
                answer = "ran " + json.dumps(ran_kinds(state.net))
            else:
                raise ValueError(f"unknown command {line!r}")
        except Exception:  # noqa: BLE001 - whatever it is, the training process must hear of it
            answer = "error " + json.dumps(traceback.format_exc(limit=3))
        channel.reply(answer)
    return False


def _parent_died(parent, wait_seconds=2.0):
    """True once this process has been handed to another parent (the kernel does so just after the
    dying parent's pipes close), within ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    while os.getppid() == parent:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def worker_main(stdin=sys.stdin, stdout=sys.stdout):
    """Serve the training process until its commands end."""
    from .transport import PARENT_VARIABLE, ParentChannel  # noqa: PLC0415

    warnings.simplefilter("ignore")  # this process's warnings were already shown by the main one
    parent = int(os.environ.get(PARENT_VARIABLE) or os.getppid())
    channel = ParentChannel(stdin, stdout)
    state = WorkerState(channel)
    told_to_exit = False
    try:
        told_to_exit = _serve(channel, state)
    except (BrokenPipeError, OSError):
        pass  # the training process is gone
    finally:
        if not told_to_exit and os.name == "posix" and _parent_died(parent):
            # The training process died (this one was handed to another parent): delete what it left.
            if state.shared is not None:
                state.shared.unlink_if_still_there()
            remove_files_of(parent)


if __name__ == "__main__":
    worker_main(sys.stdin, sys.stdout)
    # Nothing is left to flush or save (every reply was flushed, the kernel unmaps the shared block):
    # skipping the interpreter's teardown lets the training process stop its workers without waiting.
    os._exit(0)
