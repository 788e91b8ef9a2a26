"""Regularising noise, active in training only: SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout.

In inference every one of them is the identity. Each takes Keras's ``seed=``: with one the layer
draws from its own generator (saved with the model), without one from the network's seeded generator.
"""

import math

from .. import validation
from .base import Layer, register_layer
from .core import Dropout
from .reshaping import check_channels_last


class _SpatialDropout(Dropout):
    """Dropout of whole feature maps: one draw per sample and channel, shared by every spatial
    position (the mask has shape ``(N, 1, ..., 1, C)``), scaled by ``1 / (1 - rate)`` as Dropout."""

    rank = 2

    def __init__(self, rate, seed=None, data_format=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = check_channels_last(data_format, type(self).__name__)

    def compute_output_shape(self, input_shape):
        self.spatial_shape(input_shape, self.rank)
        return tuple(input_shape)

    def mask_shape(self, x_shape):
        return (x_shape[0],) + (1,) * self.rank + (x_shape[-1],)

    def get_config(self):
        config = {**Layer.get_config(self), "rate": self.rate}
        if self.seed is not None:
            config["seed"] = self.seed
        return config


@register_layer
class SpatialDropout2D(_SpatialDropout):
    """Drop whole channels of ``(N, H, W, C)`` images in training (Keras's ``SpatialDropout2D``)."""


@register_layer
class SpatialDropout1D(_SpatialDropout):
    """Drop whole channels of ``(N, L, C)`` sequences in training."""

    rank = 1


@register_layer
class SpatialDropout3D(_SpatialDropout):
    """Drop whole channels of ``(N, D, H, W, C)`` volumes in training."""

    rank = 3


class _Noise(Layer):
    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = validation.seed(seed, "seed", type(self).__name__)

    def get_config(self):
        config = super().get_config()
        if self.seed is not None:
            config["seed"] = self.seed
        return config


@register_layer
class GaussianNoise(_Noise):
    """Add zero-mean normal noise of standard deviation ``stddev`` in training (Keras's
    ``GaussianNoise``); the gradient passes unchanged, since the noise does not depend on ``x``."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.stddev = validation.non_negative_number(stddev, "stddev", "GaussianNoise")

    def forward(self, x, training=False):
        self.check_input(x)
        if not training or self.stddev == 0:
            return x
        return x + (self.stddev * self.random.standard_normal(x.shape)).astype(x.dtype)

    def backward(self, dy):
        return dy

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@register_layer
class GaussianDropout(_Noise):
    """Multiply by normal noise of mean 1 and standard deviation ``sqrt(rate / (1 - rate))`` in
    training (Keras's ``GaussianDropout``); ``rate`` in ``[0, 1)``."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = validation.probability(rate, "rate", "GaussianDropout")

    def forward(self, x, training=False):
        self.check_input(x)
        if not training or self.rate == 0:
            self._noise = None
            return x
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        self._noise = (1.0 + stddev * self.random.standard_normal(x.shape)).astype(x.dtype)
        return x * self._noise

    def backward(self, dy):
        return dy if self._noise is None else dy * self._noise

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}

