"""Weight penalties and constraints around the optimizer step: written once, used by every strategy.

The loss a step reports and minimises is, as in Keras 3,

    data loss + sum of activity penalties / batch size + sum of weight penalties.

The first two are means over the batch's rows: each participant of a data-parallel step computes them
on its rows (:meth:`~modularcnn.training.objective.Objective.backpropagate`, the activity part through
:mod:`modularcnn.regularizers`' tally), and their shares add up. The weight penalties depend on the
weights alone, so they are *not* a participant's business: :func:`optimizer_step` adds their value and
gradient once, to the summed gradients, then runs the optimizer, then projects the constrained weights
(in place: data-parallel workers share the arrays). Every strategy calls it where it used to call
``optimizer.apply``.
"""

from ..constraints import project
from .finite import check_step


def parameter_owners(layers):
    """``{"<layer>/<key>": (leaf layer, key)}`` for every trainable parameter, keyed exactly as
    ``trainable_params`` keys them (a residual block's or nested network's under its own name)."""
    owners = {}
    for layer in layers:
        trainable = layer.trainable_params
        if layer.sublayers:
            inner = parameter_owners(layer.sublayers)
            owners.update({f"{layer.name}/{key}": owner for key, owner in inner.items()
                           if key in trainable})
        else:
            owners.update({f"{layer.name}/{key}": (layer, key) for key in trainable})
    return owners


def regularized_parameters(net, params):
    """``[(key, regularizer)]`` of the parameters in ``params`` that have one."""
    found = []
    for key, (layer, inner) in parameter_owners(net.layers).items():
        regularizer = layer.regularizer_of(inner)
        if regularizer is not None and key in params:
            found.append((key, regularizer))
    return found


def weight_penalty(net, params=None):
    """The sum of the weight regularizers' penalties at the current weights (0.0 without any)."""
    params = net.trainable_params() if params is None else params
    return float(sum(regularizer(params[key])
                     for key, regularizer in regularized_parameters(net, params)))


def with_penalty_gradients(net, params, grads):
    """``grads`` with every regularized weight's penalty gradient added (new arrays for those keys:
    the given gradients, a worker's or a layer's, are left as they are)."""
    regularized = regularized_parameters(net, params)
    if not regularized:
        return grads
    grads = dict(grads)
    for key, regularizer in regularized:
        grads[key] = grads[key] + regularizer.gradient(params[key])
    return grads


def apply_constraints(net, params=None):
    """Project every constrained trainable weight in place (Keras: after the optimizer step)."""
    params = net.trainable_params() if params is None else params
    for key, (layer, inner) in parameter_owners(net.layers).items():
        constraint = layer.constraint_of(inner)
        if constraint is not None and key in params:
            project(constraint, params[key])


def optimizer_step(net, params, grads, check_finite=False, loss=None):
    """The step every strategy takes once per batch on summed gradients: add the weight penalties'
    gradients, apply the optimizer to ``params``, project the constrained weights.

    With ``check_finite`` the step's ``loss`` (None: not checked) and ``grads`` are checked first
    (:func:`modularcnn.training.finite.check_step`): a NonFiniteLossError leaves every weight and
    the optimizer's state as they were.

    Returns the weight penalty at the weights *before* the step (what Keras adds to the step's loss).
    """
    if check_finite:
        check_step(loss, grads)
    penalty = weight_penalty(net, params)
    net.optimizer.apply(params, with_penalty_gradients(net, params, grads))
    apply_constraints(net, params)
    return penalty
