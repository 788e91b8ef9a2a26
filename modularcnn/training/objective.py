"""How the loss meets the network's last layer: the fused softmax/sigmoid cross-entropy and its cousins.

A softmax output followed by cross-entropy is computed from the logits ``z`` (the softmax's input) with
log-sum-exp, and back-propagation starts *below* the softmax with the gradient ``p - y``: exact, cheap,
and finite for any logits. The same holds for a sigmoid output with binary cross-entropy.

A cross-entropy placed on an output that is neither softmax nor sigmoid, and not marked
``from_logits=True``, is treated as logits, with a one-time warning: Keras silently reads such outputs as
probabilities, which trains badly or not at all.
"""

import warnings

import numpy as np

from .. import losses, regularizers

_FUSED_ACTIVATION = {losses.CategoricalCrossentropy: "softmax", losses.BinaryCrossentropy: "sigmoid"}
# (CategoricalFocalCrossentropy is a CategoricalCrossentropy: it fuses with a softmax output too.)


class Objective:
    """The loss of a compiled network, bound to its output layer.

    ``value_and_gradient(outputs, y)`` returns ``(loss, gradient, from_preactivation)``; when the last
    flag is true the gradient is with respect to the last layer's pre-activation and must be passed to
    its ``backward_preactivation``.
    """

    def __init__(self, net, loss=None, last=None, fusable=True):
        self.net = net
        self.loss = net.loss if loss is None else loss
        # ``last()`` is the object that computed the output in the last forward pass: the output
        # layer, or in a graph a shared layer's call instance (see modularcnn.graph_execution).
        self._last = last or (lambda: net.layers[-1])
        self.last = self._last()
        self.mode = "plain"
        if getattr(self.last, "activity_regularizer", None) is not None:
            # Its penalty's gradient enters above the activation: start from the output, not below.
            fusable = False
        cross_entropy = next((fused for kind, fused in _FUSED_ACTIVATION.items()
                              if isinstance(self.loss, kind)), None)
        if cross_entropy is None or self.loss.from_logits:
            return
        activation = getattr(getattr(self.last, "activation", None), "name", None)
        # A softmax along another axis than the last one is not what the fused gradient assumes.
        last_axis = getattr(getattr(self.last, "activation", None), "axis", -1) == -1
        if (activation == cross_entropy and last_axis and fusable
                and hasattr(self.last, "backward_preactivation")):
            self.mode = "fused"
        elif activation not in ("softmax", "sigmoid"):
            self.mode = "logits"
            if not getattr(net, "_warned_logits", False):
                net._warned_logits = True
                warnings.warn(
                    f"{type(self.loss).__name__} follows layer {self.last.name!r} whose output is "
                    f"{activation or 'not an activation'}, not {cross_entropy}: its outputs are treated "
                    f"as logits. Add activation='{cross_entropy}' or pass from_logits=True to silence this.",
                    UserWarning, stacklevel=4,
                )

    def value_and_gradient(self, outputs, y, sample_weight=None):
        """Loss and its gradient; with ``sample_weight`` (N,) the loss is Keras's weighted mean
        ``sum_n w_n * loss_n / N`` (divided by the batch size, not by the sum of the weights)."""
        if sample_weight is None:
            return self._unweighted(outputs, y)
        value, grad, from_preactivation = self._unweighted(outputs, y)
        # Every loss is a mean over samples, so row n of its gradient is d(loss_n)/d(output_n) / N:
        # scaling the rows by w_n gives the gradient of the weighted mean exactly.
        weights = np.asarray(sample_weight, dtype=grad.dtype).reshape((-1,) + (1,) * (grad.ndim - 1))
        grad = grad * weights
        if self.mode == "fused":
            per_sample = self.loss.per_sample_from_logits(y, self._last().preactivation)
        elif self.mode == "logits":
            per_sample = self.loss.per_sample_from_logits(y, outputs)
        else:
            per_sample = self.loss.per_sample(y, outputs)
        return float(np.mean(per_sample * sample_weight)), grad, from_preactivation

    def _unweighted(self, outputs, y):
        if self.mode == "fused":
            value, grad = self.loss.value_and_gradient_from_logits(y, self._last().preactivation)
            return value, grad, True
        if self.mode == "logits":
            value, grad = self.loss.value_and_gradient_from_logits(y, outputs)
            return value, grad, False
        value, grad = self.loss.value_and_gradient(y, outputs)
        return value, grad, False

    def backpropagate(self, x, y, weight=1.0, sample_weight=None):
        """Forward pass of ``x`` in training mode, the loss against ``y``, and the backward pass, which
        leaves the gradient of ``weight`` × the loss in every layer's ``grads``. ``sample_weight``
        (N,) weighs each sample's loss as in :meth:`value_and_gradient`.

        Returns ``(loss, outputs)``. A data-parallel worker weighs its rows' mean loss by their share
        of the batch, so that the workers' gradients add up to the whole batch's.
        """
        outputs, activity = forward_with_penalties(self.net, x, True, weight)
        value, grad, from_preactivation = self.value_and_gradient(outputs, y, sample_weight)
        if weight != 1:
            grad = grad * grad.dtype.type(weight)
        self.net.backward(grad, input_gradient=False, preactivation=from_preactivation)
        return value + activity, outputs

    def evaluate(self, x, y, sample_weight=None):
        """Inference on a batch: ``(its mean loss with the activity penalties, outputs)``; the weight
        penalties are the caller's to add once (:func:`~.penalties.weight_penalty`)."""
        outputs, activity = forward_with_penalties(self.net, x, False)
        value, _, _ = self.value_and_gradient(outputs, y, sample_weight)
        return value + activity, outputs


def forward_with_penalties(net, x, training, weight=1.0):
    """``(net.forward(x, training), the pass's activity penalties)``; in the backward pass that
    follows, the penalties' gradients are weighted by ``weight`` (a participant's share)."""
    with regularizers.tally_activity(weight) as tally:
        outputs = net.forward(x, training=training)
    return outputs, tally.total


def objective_last(net):
    """The output layer an objective of ``net`` is bound to (the check that it is still current)."""
    if hasattr(net, "make_objective"):
        return None
    return net.layers[-1]


def objective_for(net):
    """The objective of a compiled network: its own (a Model's: per output) or :class:`Objective`."""
    if hasattr(net, "make_objective"):
        return net.make_objective()
    return Objective(net)
