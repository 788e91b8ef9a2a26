"""Shape-only and element-wise layers: Flatten, Reshape, Activation, Dropout, Rescaling."""

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
    ``1 / (1 - rate)``, so that inference is the identity and needs no rescaling.

    ``noise_shape`` (Keras's): the shape of the mask, ``(N, ...)`` with 1 on the axes where one draw
    is shared (``None`` entries take the input's size); ``None`` draws every value. ``seed``: the
    layer draws from its own generator seeded with it (saved with the model); ``None`` draws from the
    network's seeded generator.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.rate = validation.probability(rate, "rate", owner)
        self.seed = validation.seed(seed, "seed", owner)
        expected = "None or a list (batch axis first) of positive ints, 1 or None"
        if noise_shape is not None:
            if not isinstance(noise_shape, (tuple, list)) or not all(
                    d is None or (validation.is_integer(d) and d >= 1) for d in noise_shape):
                validation.fail(owner, "noise_shape", expected, noise_shape)
            noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
        self.noise_shape = noise_shape

    def compute_output_shape(self, input_shape):
        if self.noise_shape is not None:
            full = (None, *input_shape)
            if len(self.noise_shape) != len(full) or any(
                    d is not None and d != 1 and (n is None or d != n)
                    for d, n in zip(self.noise_shape, full)):
                raise ValueError(f"{self.describe()}: noise_shape {list(self.noise_shape)} does not "
                                 f"fit inputs of shape (N, {', '.join(map(str, input_shape))}): each "
                                 "entry must be 1, None or the input's size")
        return tuple(input_shape)

    def mask_shape(self, x_shape):
        """The shape of one draw of the mask for a batch of shape ``x_shape``."""
        if self.noise_shape is None:
            return x_shape
        return tuple(n if d is None else d for d, n in zip(self.noise_shape, x_shape))

    def forward(self, x, training=False):
        self.check_input(x)
        if not training or self.rate == 0:
            self._mask = None
            return x
        keep = self.random.random(self.mask_shape(x.shape), dtype=np.float32) >= self.rate
        self._mask = keep * x.dtype.type(1.0 / (1.0 - self.rate))
        return x * self._mask

    def backward(self, dy):
        return dy if self._mask is None else dy * self._mask

    def get_config(self):
        config = {**super().get_config(), "rate": self.rate}
        if self.noise_shape is not None:
            config["noise_shape"] = list(self.noise_shape)
        if self.seed is not None:
            config["seed"] = self.seed
        return config


@register_layer
class Rescaling(Layer):
    """``y = x * scale + offset`` (Keras's ``Rescaling``), e.g. ``Rescaling(1 / 255)`` for pixels.

    ``scale`` and ``offset`` are numbers, or nested lists broadcasting against one sample without
    changing its shape (``[0.5, 1, 2]`` per channel). They are constants: no parameters are trained.
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = self._constant(scale, "scale")
        self.offset = self._constant(offset, "offset")

    @staticmethod
    def _constant(value, name):
        expected = "a finite number or a nested list of them"
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            validation.fail("Rescaling", name, expected, value)
        if isinstance(value, (bool, np.bool_)) or array.dtype == object or not np.isfinite(array).all():
            validation.fail("Rescaling", name, expected, value)
        return float(array) if array.ndim == 0 else array

    def compute_output_shape(self, input_shape):
        for name, value in (("scale", self.scale), ("offset", self.offset)):
            shape = np.shape(value)
            try:
                broadcast = np.broadcast_shapes(tuple(input_shape), shape)
            except ValueError:
                broadcast = None
            if broadcast != tuple(input_shape):
                raise ValueError(f"{self.describe()}: {name} of shape {shape} does not broadcast "
                                 f"against samples of shape {tuple(input_shape)} keeping their shape")
        return tuple(input_shape)

    def forward(self, x, training=False):
        self.check_input(x)
        return x * x.dtype.type(self.scale) + x.dtype.type(self.offset) if np.ndim(self.scale) == 0 \
            and np.ndim(self.offset) == 0 else (x * self.scale + self.offset).astype(x.dtype)

    def backward(self, dy):
        return (dy * self.scale).astype(dy.dtype, copy=False)

    def get_config(self):
        def plain(value):
            return value if isinstance(value, float) else value.tolist()

        return {**super().get_config(), "scale": plain(self.scale), "offset": plain(self.offset)}
