"""Shape-only and element-wise layers: Flatten, Reshape, Activation, Dropout."""

import math

import numpy as np

from .. import validation
from .base import ActivatedLayer, Layer, pick_alias, register_layer

_REQUIRED = object()  # Activation(None) is the identity, as in Keras; Activation() is a mistake


@register_layer
class Flatten(Layer):
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``, in channels-last (C) order."""

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self.check_input(x)
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._x_shape)


@register_layer
class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (one entry may be -1, as in NumPy)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        expected = "a tuple of positive ints with at most one -1"
        if not isinstance(target_shape, (tuple, list)) or not all(
                validation.is_integer(d) for d in target_shape):
            validation.fail("Reshape", "target_shape", expected, target_shape)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(d < 1 and d != -1 for d in self.target_shape):
            validation.fail("Reshape", "target_shape", expected, target_shape)
        validation.shape_tuple([abs(d) for d in self.target_shape], "target_shape", "Reshape",
                               min_rank=0)

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"{self.describe()}: cannot reshape {tuple(input_shape)} "
                                 f"({size} values) to {self.target_shape}")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ValueError(f"{self.describe()}: cannot reshape {tuple(input_shape)} ({size} values) "
                             f"to {self.target_shape} ({known} values)")
        return self.target_shape

    def forward(self, x, training=False):
        self.check_input(x)
        return x.reshape((x.shape[0],) + self.output_shape)

    def backward(self, dy):
        return dy.reshape((dy.shape[0],) + self.input_shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


@register_layer
class Activation(ActivatedLayer):
    """Apply an activation function element-wise (softmax: over the last axis).

    ``Activation("relu")``, ``Activation("leakyrelu", alpha=0.1)``; names in
    :func:`modularcnn.activations.names`. The seed library's keyword ``function=`` is accepted for
    ``activation``. The pre-activation is this layer's input.
    """

    def __init__(self, activation=_REQUIRED, alpha=None, function=None, **kwargs):
        if activation is _REQUIRED and function is None:
            raise ValueError("Activation: give the activation, e.g. Activation('relu')")
        if activation is _REQUIRED:
            activation = None
        activation = pick_alias("Activation", "function", function, "activation", activation, None)
        super().__init__(activation=activation, alpha=alpha, **kwargs)

    def forward(self, x, training=False):
        self.check_input(x)
        # Not the in-place activate(): x belongs to the layer below (or the caller).
        a = self.activation.forward(x)
        self.preactivation, self._a = x, a
        return a

    def backward_preactivation(self, dz):
        """The gradient before the activation is the gradient of this layer's input."""
        return dz


@register_layer
class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability ``rate`` and scale the rest by
    ``1 / (1 - rate)``, so that inference is the identity and needs no rescaling."""

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = validation.probability(rate, "rate", "Dropout")

    def forward(self, x, training=False):
        self.check_input(x)
        if not training or self.rate == 0:
            self._mask = None
            return x
        keep = self.random.random(x.shape, dtype=np.float32) >= self.rate
        self._mask = keep * x.dtype.type(1.0 / (1.0 - self.rate))
        return x * self._mask

    def backward(self, dy):
        return dy if self._mask is None else dy * self._mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}
