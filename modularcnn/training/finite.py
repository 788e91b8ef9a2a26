"""The check that a training step is finite before the optimizer takes it (issue 14, item 15).

A finite input can still overflow the network's arithmetic: ``x * 1e30`` in float32 gives a loss of
``inf`` or ``nan``, or gradients whose squares (Adam, RMSprop) overflow, and one optimizer step then
turns every weight into NaN. The first step of every ``fit`` and every ``train_on_batch`` is checked
between the backward pass and the optimizer: a :class:`~modularcnn.errors.NonFiniteLossError`
comes out before any weight (or optimizer slot, or batch-norm moving statistic) changes. At that
point nothing has been learnt yet, so the cause is the data, and the error says how large it is.

Later steps of a ``fit`` are not stopped, as in Keras (where the log shows ``loss: nan``): a
learning rate that makes training diverge is the model's business, and
:class:`~modularcnn.callbacks.TerminateOnNaN` stops it; ``fit`` warns once when it happens.
"""

import inspect
import math

import numpy as np

from ..errors import NonFiniteLossError
from ..layers.base import all_layers


def step_problem(loss, grads):
    """What makes a step unsafe to apply, or None.

    Parameters
    ----------
    loss : float or None
        The step's loss (None where a strategy has only its own share, as an MPI rank).
    grads : dict of str -> array
        The summed gradients the optimizer would apply.

    A gradient is refused when it holds NaN or inf, or values beyond ``sqrt(finfo.max)`` of its own
    dtype (about 1.8e19 in float32), which Adam's and RMSprop's squared
    averages would turn into inf. One dot product per gradient (a pass over it, no temporary) decides;
    only when it overflows are the values looked at one by one.
    """
    if loss is not None and not math.isfinite(loss):
        return f"the loss is {loss}"
    with np.errstate(over="ignore", invalid="ignore"):
        for key, gradient in grads.items():
            flat = np.asarray(gradient).reshape(-1)
            if np.isfinite(np.dot(flat, flat)):
                continue
            if not np.isfinite(flat).all():
                return f"the gradient of {key!r} is not finite"
            # The sum overflowed from finite values: refuse only if one value's square does (what
            # Adam's and RMSprop's element-wise squared averages compute); many large values whose
            # squares fit are fine.
            largest = float(np.abs(flat).max())
            if largest > math.sqrt(float(np.finfo(flat.dtype).max)):
                return (f"the gradient of {key!r} reaches {largest:.3g}, too large to square "
                        f"in {flat.dtype}")
    return None


def check_step(loss, grads):
    """Raise :class:`NonFiniteLossError` when :func:`step_problem` finds one."""
    problem = step_problem(loss, grads)
    if problem is not None:
        raise NonFiniteLossError(problem)


def _largest(values):
    """The largest absolute value of a numeric array (or of a model's several input or target
    arrays), or None when there is none to measure."""
    values = getattr(values, "arrays", values)  # several inputs or outputs of a graph model
    if isinstance(values, dict):
        values = list(values.values())
    arrays = values if isinstance(values, (list, tuple)) else [values]
    largest = None
    with np.errstate(over="ignore", invalid="ignore"):
        for array in arrays:
            try:
                array = np.asarray(array)
            except ValueError:
                continue
            if array.dtype.kind in "fiu" and array.size:
                value = float(np.max(np.abs(array)))
                largest = value if largest is None else max(largest, value)
    return largest


def explained(error, owner, x, y, dtype):
    """``error`` (from :func:`check_step`) as the message a user can act on: what was not finite,
    that no weight changed, how large the batch's inputs and targets are and where ``dtype``
    overflows."""
    dtype = np.dtype(dtype)
    inputs, targets = _largest(x), _largest(y)
    sizes = ", ".join(f"{name} reach {value:.3g}" for name, value in
                      (("the inputs", inputs), ("the targets", targets)) if value is not None)
    hint = ("scale the data (e.g. x / 255, or standardise it)"
            if max(inputs or 0, targets or 0) > 1e6 else
            "check the data, the loss and the layers' initial weights")
    return NonFiniteLossError(
        f"{owner}: {error} on the first batch, so no weight was changed. In this batch {sizes}; "
        f"{dtype.name} arithmetic overflows beyond {np.finfo(dtype).max:.3g}: {hint}")


def _takes_check_finite(step):
    try:
        parameters = inspect.signature(step).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "check_finite" or p.kind is p.VAR_KEYWORD for p in parameters)


def checked_step(step, net, owner, x, y, sample_weight=None):
    """``step(x, y, sample_weight, check_finite=True)`` (a strategy's step): ``(loss, outputs)``.

    A :class:`NonFiniteLossError` from it (the optimizer did not run) puts the moving statistics
    back as they were before the forward pass and comes out as :func:`explained` words it.
    """
    if not _takes_check_finite(step):
        return step(x, y, sample_weight)  # a strategy of the user's, written before the check
    snapshot = StateSnapshot(net)
    try:
        return step(x, y, sample_weight, check_finite=True)
    except NonFiniteLossError as error:
        snapshot.restore()
        raise explained(error, owner, x, y, getattr(net, "dtype", np.float32)) from None


class StateSnapshot:
    """Copies of every layer's state entries (moving statistics: ``non_trainable_params`` that are
    not frozen weights), put back when a checked step is refused: the forward pass of that step has
    already moved them. Small arrays, ``(F,)`` per batch normalization, taken for one step only."""

    def __init__(self, net):
        self.saved = [(layer, key, np.array(layer.params[key]))
                      for layer in all_layers(net.layers) if not layer.sublayers
                      for key in layer.non_trainable_params if key in layer.params]

    def restore(self):
        for layer, key, value in self.saved:
            np.copyto(layer.params[key], value)
