"""How the loss meets the network's last layer: the fused softmax/sigmoid cross-entropy and its cousins.

A softmax output followed by cross-entropy is computed from the logits ``z`` (the softmax's input) with
log-sum-exp, and back-propagation starts *below* the softmax with the gradient ``p - y``: exact, cheap,
and finite for any logits. The same holds for a sigmoid output with binary cross-entropy.

A cross-entropy placed on an output that is neither softmax nor sigmoid, and not marked
``from_logits=True``, is treated as logits, with a one-time warning: Keras silently reads such outputs as
probabilities, which trains badly or not at all.
"""

import warnings

from .. import losses

_FUSED_ACTIVATION = {losses.CategoricalCrossentropy: "softmax", losses.BinaryCrossentropy: "sigmoid"}
# (CategoricalFocalCrossentropy is a CategoricalCrossentropy: it fuses with a softmax output too.)


class Objective:
    """The loss of a compiled network, bound to its output layer.

    ``value_and_gradient(outputs, y)`` returns ``(loss, gradient, from_preactivation)``; when the last
    flag is true the gradient is with respect to the last layer's pre-activation and must be passed to
    its ``backward_preactivation``.
    """

    def __init__(self, net):
        self.net = net
        self.loss = net.loss
        self.last = net.layers[-1]
        self.mode = "plain"
        cross_entropy = next((fused for kind, fused in _FUSED_ACTIVATION.items()
                              if isinstance(self.loss, kind)), None)
        if cross_entropy is None or self.loss.from_logits:
            return
        activation = getattr(getattr(self.last, "activation", None), "name", None)
        # A softmax along another axis than the last one is not what the fused gradient assumes.
        last_axis = getattr(self.last.activation, "axis", -1) == -1
        if activation == cross_entropy and last_axis and hasattr(self.last, "backward_preactivation"):
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

    def value_and_gradient(self, outputs, y):
        if self.mode == "fused":
            value, grad = self.loss.value_and_gradient_from_logits(y, self.last.preactivation)
            return value, grad, True
        if self.mode == "logits":
            value, grad = self.loss.value_and_gradient_from_logits(y, outputs)
            return value, grad, False
        value, grad = self.loss.value_and_gradient(y, outputs)
        return value, grad, False

    def backpropagate(self, x, y, weight=1.0):
        """Forward pass of ``x`` in training mode, the loss against ``y``, and the backward pass, which
        leaves the gradient of ``weight`` × the loss in every layer's ``grads``.

        Returns ``(loss, outputs)``. A data-parallel worker weighs its rows' mean loss by their share
        of the batch, so that the workers' gradients add up to the whole batch's.
        """
        outputs = self.net.forward(x, training=True)
        value, grad, from_preactivation = self.value_and_gradient(outputs, y)
        if weight != 1:
            grad = grad * grad.dtype.type(weight)
        self.net.backward(grad, input_gradient=False, preactivation=from_preactivation)
        return value, outputs
