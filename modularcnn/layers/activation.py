"""Activation layers with Keras's names and arguments: ReLU, LeakyReLU, PReLU, ELU, Softmax.

All but :class:`PReLU` are :class:`~modularcnn.layers.Activation` layers holding an activation object
of :mod:`modularcnn.activations`; their configs are their own constructor arguments.
"""

import numpy as np

from .. import activations, initializers, validation
from .base import Layer, register_layer
from .core import Activation


class _FixedActivation(Activation):
    """An :class:`Activation` layer whose function is set by the subclass's own arguments."""

    def __init__(self, function, **kwargs):
        super().__init__(function, **kwargs)

    def options(self):
        """The subclass's constructor arguments (beyond the base layer's)."""
        raise NotImplementedError

    def get_config(self):
        return {**Layer.get_config(self), **self.options()}


@register_layer
class ReLU(_FixedActivation):
    """Keras's ``ReLU(max_value=None, negative_slope=0.0, threshold=0.0)`` layer.

    ``max_value`` for ``x >= max_value``, ``x`` for ``threshold < x < max_value``,
    ``negative_slope * (x - threshold)`` otherwise; see :class:`modularcnn.activations.ReLU`.
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(activations.ReLU(max_value, negative_slope, threshold), **kwargs)

    def options(self):
        a = self.activation
        return {"max_value": a.max_value, "negative_slope": a.negative_slope, "threshold": a.threshold}


@register_layer
class LeakyReLU(_FixedActivation):
    """Keras's ``LeakyReLU(negative_slope=0.3)``: ``x`` for ``x > 0``, ``negative_slope * x`` otherwise."""

    def __init__(self, negative_slope=0.3, **kwargs):
        negative_slope = validation.non_negative_number(negative_slope, "negative_slope", "LeakyReLU")
        super().__init__(activations.LeakyReLU(negative_slope), **kwargs)

    def options(self):
        return {"negative_slope": self.activation.alpha}


@register_layer
class ELU(_FixedActivation):
    """Keras's ``ELU(alpha=1.0)``: ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha=1.0, **kwargs):
        alpha = validation.real(alpha, "alpha", "ELU")
        super().__init__(activations.ELU(alpha), **kwargs)

    def options(self):
        return {"alpha": self.activation.alpha}


@register_layer
class Softmax(_FixedActivation):
    """Keras's ``Softmax(axis=-1)``: softmax along ``axis``, which counts the batch axis as 0.

    Only a softmax along the last axis is fused with a following cross-entropy loss.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(activations.Softmax(axis), **kwargs)

    def compute_output_shape(self, input_shape):
        rank = len(input_shape) + 1
        axis = self.activation.axis
        if not -rank < axis < rank or axis % rank == 0:
            raise ValueError(f"{self.describe()}: axis {axis} is not a feature axis of inputs of "
                             f"shape (N, {', '.join(map(str, input_shape))})")
        return tuple(input_shape)

    def build(self, input_shape):
        super().build(input_shape)
        # Name the last axis -1, so that a fused cross-entropy recognises it whichever way it was given.
        rank = len(self.input_shape) + 1
        if self.activation.axis % rank == rank - 1:
            self._given_axis = self.activation.axis
            self.activation = activations.Softmax(-1)

    def options(self):
        return {"axis": getattr(self, "_given_axis", self.activation.axis)}


def prelu_forward(x, alpha):
    """``x`` where positive, ``alpha * x`` elsewhere; ``alpha`` broadcasts against a sample of ``x``."""
    return np.where(x > 0, x, alpha * x)


def prelu_backward(dy, x, alpha, alpha_shape):
    """``(dx, dalpha)`` of :func:`prelu_forward`; ``dalpha`` is summed down to ``alpha_shape``."""
    negative = x <= 0
    dx = np.where(negative, alpha * dy, dy)
    dalpha_full = np.where(negative, dy * x, 0)
    reduce_axes = (0,) + tuple(axis + 1 for axis, n in enumerate(alpha_shape) if n == 1
                               and dalpha_full.shape[axis + 1] != 1)
    dalpha = dalpha_full.sum(axis=reduce_axes, keepdims=True)[0]
    return dx, dalpha.reshape(alpha_shape)


@register_layer
class PReLU(Layer):
    """Parametric ReLU with a learned slope per element: ``x`` for ``x > 0``, ``alpha * x`` otherwise.

    ``alpha`` has the per-sample input shape, except along ``shared_axes`` (Keras's numbering, the batch
    axis being 0: ``shared_axes=[1, 2]`` shares one slope per channel over an image's height and
    width), where it has length 1. Initialised with ``alpha_initializer`` (zeros, as in Keras);
    ``alpha_regularizer`` and ``alpha_constraint`` as in Keras.
    """

    weight_options = {"alpha": "alpha"}

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.set_weight_options({"alpha_regularizer": alpha_regularizer,
                                 "alpha_constraint": alpha_constraint})
        self.alpha_initializer = initializers.get(alpha_initializer)
        if shared_axes is None:
            shared_axes = ()
        elif isinstance(shared_axes, (int, np.integer)) and not isinstance(shared_axes, bool):
            shared_axes = (shared_axes,)
        try:
            self.shared_axes = tuple(sorted({int(a) for a in shared_axes}))
        except (TypeError, ValueError):
            raise ValueError(f"PReLU: shared_axes must be None, an int or a list of ints, "
                             f"got {shared_axes!r}") from None
        if any(a < 1 for a in self.shared_axes):
            raise ValueError(f"PReLU: shared_axes count the batch axis as 0 and must be >= 1, "
                             f"got {shared_axes!r}")

    def compute_output_shape(self, input_shape):
        if self.shared_axes and self.shared_axes[-1] > len(input_shape):
            raise ValueError(f"{self.describe()}: shared_axes {list(self.shared_axes)} do not exist in "
                             f"inputs of shape (N, {', '.join(map(str, input_shape))})")
        return tuple(input_shape)

    def build(self, input_shape):
        super().build(input_shape)
        shape = tuple(1 if axis + 1 in self.shared_axes else n for axis, n in enumerate(self.input_shape))
        self.add_param("alpha", shape, self.alpha_initializer)

    def forward(self, x, training=False):
        self.check_input(x)
        self._x = x
        return prelu_forward(x, self.params["alpha"])

    def backward(self, dy):
        alpha = self.params["alpha"]
        dx, self.grads["alpha"] = prelu_backward(dy, self._x, alpha, alpha.shape)
        return dx

    def get_config(self):
        return {**super().get_config(),
                "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "shared_axes": list(self.shared_axes) or None, **self.weight_options_config()}
