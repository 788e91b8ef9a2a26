"""The optimizer step run by the workers themselves, each on its share of the parameters.

In a data-parallel step (:mod:`.local`) the workers compute their gradients and then, by default,
wait while the training process sums them and runs the optimizer over every parameter. When the
update can be split (:func:`sharded_update`), each worker instead sums the gradients of its flat
ranges of the parameters (:mod:`modularcnn.parameter_shards`) over every busy worker and runs the
optimizer over those ranges, all at once. The optimizer's state (Adam's ``m`` and ``v``...) then lives
in the shared block beside the weights, so the training process still sees it whole (``get_state``,
checkpoints) and can take a step itself when it must::

    this process                               worker k
    "update <lr> <iterations> <busy workers>" -->  for each range of its share: the sum of the busy
                                                   workers' gradients, then the optimizer's update
                                     <--updated--  (weights and state in shared memory)
    iterations += 1, project constrained weights

The numbers are exactly those of the training process's own step: the same sums in the same order,
the same element-wise operations. What keeps the update in the training process: an optimizer that
is not element-wise or not one of modularcnn's own (a custom class; ``Optimizer.elementwise``),
gradient clipping (its norms span whole arrays), weight regularizers (their penalty gradients are
added to the sum), fewer than :data:`~modularcnn.parameter_shards.MIN_SHARDED_ELEMENTS` trainable
values, and the steps whose gradients are checked for finite values (the first of a fit). The
learning rate is read at every step (schedules and callbacks that change it work); the other
hyperparameters are read when the fit starts.
"""

from ... import optimizers
from ...parameter_shards import share_out
from ..penalties import regularized_parameters
from .base import sum_in_order


def sharded_update(net, workers):
    """What the workers need to run ``net``'s optimizer step on shares, or None when it stays in this
    process: ``{"optimizer": serialized optimizer, "shares": [[(key, start, stop), ...] per worker],
    "slots": [state names]}``. Builds the optimizer's state (zeros) for the trainable parameters."""
    optimizer, params = net.optimizer, net.trainable_params()
    own_class = type(optimizer).__module__ == optimizers.__name__
    clipping = (optimizer.clipvalue, optimizer.clipnorm, optimizer.global_clipnorm) != (None,) * 3
    if (not own_class or not optimizer.elementwise or clipping or regularized_parameters(net, params)
            or not all(param.flags.c_contiguous for param in params.values())):
        return None
    shares = share_out({key: param.size for key, param in params.items()}, workers)
    if shares is None:
        return None
    optimizer.build(params)
    slots = [f"{slot}/{key}" for key in params for slot in optimizer.slot_names()]
    return {"optimizer": optimizers.serialize(optimizer), "shares": shares, "slots": slots}


def slot_layout(net, update):
    """The shared arrays ``[(name, shape, dtype)]`` that hold the optimizer's state (none without a
    sharded update)."""
    if update is None:
        return []
    state = net.optimizer._slots
    return [(f"slot:{name}", state[name].shape, state[name].dtype) for name in update["slots"]]


def share_state(optimizer, block, names):
    """Point the optimizer's state arrays ``names`` at the shared block, copying their values in
    (again after a ``set_state`` replaced them)."""
    state = optimizer._slots
    for name in names:
        shared = block[f"slot:{name}"]
        if state[name] is not shared:
            shared[...] = state[name]
            state[name] = shared


def unshare_state(optimizer, block, names):
    """Give the optimizer private copies of its shared state arrays (the block is about to go)."""
    state = optimizer._slots
    for name in names:
        if state.get(name) is block[f"slot:{name}"]:
            state[name] = state[name].copy()


class WorkerUpdate:
    """A worker's side: its share of the ranges, its copy of the optimizer on the shared state."""

    def __init__(self, update, index, shared, params):
        self.optimizer = optimizers.get(update["optimizer"])
        self.optimizer._slots = {name: shared[f"slot:{name}"] for name in update["slots"]}
        self.share = [tuple(entry) for entry in update["shares"][index]]
        self.params = params
        workers = len(update["shares"])
        self.grads = [{key: shared[f"grad{k}:{key}"] for key in params} for k in range(workers)]

    def __call__(self, lr, iterations, busy):
        """Sum the ``busy`` workers' gradients over this share (into the first one's arrays, which
        are written afresh next step) and update the share at step ``iterations`` with ``lr``."""
        grads = [self.grads[k] for k in busy]
        if len(grads) > 1:   # the same order as the training process's sum_gradients
            for key, start, stop in self.share:
                parts = [grad[key].reshape(-1)[start:stop] for grad in grads]
                sum_in_order(parts, parts[0])
        self.optimizer.iterations = iterations
        self.optimizer.update_ranges(self.params, grads[0], self.share, lr)
