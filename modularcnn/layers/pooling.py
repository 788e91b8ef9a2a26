"""Pooling layers: max and average, over 1, 2 or 3 spatial axes, and their global forms."""

import math

import numpy as np

from .. import validation
from ..kernels.pooling import (
    avg_pool_backward,
    avg_pool_forward,
    max_pool_backward,
    max_pool_forward,
)
from ..kernels.workspace import Workspace
from .base import Layer, pick_alias, register_layer


class _Pooling(Layer):
    """Shared geometry of the pooling layers; subclasses choose the kernel pair and the rank.

    ``pool_size`` int or tuple (default 2); ``stride`` defaults to ``pool_size`` (non-overlapping
    windows) and may be smaller for overlapping pools (e.g. 3 with stride 2); ``pad`` is ``"valid"``
    (default), ``"same"`` or ints. Keras's ``strides`` and ``padding`` are accepted too.
    """

    rank = 2

    def __init__(self, pool_size=2, stride=None, pad=None, input_shape=None, name=None,
                 trainable=True, strides=None, padding=None):
        super().__init__(input_shape=input_shape, name=name, trainable=trainable)
        kind = type(self).__name__
        self.pool_size = validation.normalize_tuple(pool_size, self.rank, "pool_size", kind)
        self.stride = validation.normalize_tuple(
            pick_alias(kind, "stride", stride, "strides", strides, self.pool_size), self.rank, "stride",
            kind)
        self.pad = validation.normalize_padding(
            pick_alias(kind, "pad", pad, "padding", padding, "valid"), self.rank, kind)

    def _geometry(self, input_shape):
        pads, out = self.window_geometry(input_shape, self.pool_size, self.stride, self.pad)
        if any(max(pair) >= k for pair, k in zip(pads, self.pool_size)):
            raise ValueError(
                f"{self.describe()}: padding {pads} must be smaller than the pool size {self.pool_size}"
            )
        return pads, out

    def compute_output_shape(self, input_shape):
        _, out = self._geometry(input_shape)
        return out + (input_shape[-1],)

    def build(self, input_shape):
        super().build(input_shape)
        self.pads, self.out_spatial = self._geometry(self.input_shape)
        self.workspace = Workspace()

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "stride": list(self.stride),
            "pad": self.pad if isinstance(self.pad, str) else [list(p) for p in self.pad],
        }


@register_layer
class MaxPooling(_Pooling):
    """Maximum over each window of ``(N, H, W, C)``; output ``(N, Ho, Wo, C)``."""

    def forward(self, x, training=False):
        self.check_input(x)
        y, self._argmax = max_pool_forward(x, self.pool_size, self.stride, self.pads, self.out_spatial,
                                           self.workspace)
        self._x_shape = x.shape
        return y

    def backward(self, dy):
        return max_pool_backward(dy, self._argmax, self._x_shape, self.pool_size, self.stride,
                                 self.pads)


@register_layer
class AveragePooling(_Pooling):
    """Mean over each window of ``(N, H, W, C)``; padded cells are not counted (as in Keras)."""

    def forward(self, x, training=False):
        self.check_input(x)
        y, self._counts = avg_pool_forward(x, self.pool_size, self.stride, self.pads,
                                           self.out_spatial)
        self._x_shape = x.shape
        return y

    def backward(self, dy):
        return avg_pool_backward(dy, self._counts, self._x_shape, self.pool_size, self.stride,
                                 self.pads)


@register_layer
class MaxPooling2D(MaxPooling):
    """Keras's name for :class:`MaxPooling`."""


@register_layer
class MaxPool2D(MaxPooling):
    """Keras's short name for :class:`MaxPooling`."""


@register_layer
class AveragePooling2D(AveragePooling):
    """Keras's name for :class:`AveragePooling`."""


@register_layer
class MaxPooling1D(MaxPooling):
    """Max pooling over ``(N, L, C)``."""

    rank = 1


@register_layer
class AveragePooling1D(AveragePooling):
    """Average pooling over ``(N, L, C)``."""

    rank = 1


@register_layer
class MaxPooling3D(MaxPooling):
    """Max pooling over ``(N, D, H, W, C)``."""

    rank = 3


@register_layer
class AveragePooling3D(AveragePooling):
    """Average pooling over ``(N, D, H, W, C)``."""

    rank = 3


class _GlobalPooling(Layer):
    """Reduce every spatial axis of ``(N, *S, C)`` to one value per channel: output ``(N, C)``, or
    ``(N, 1, ..., 1, C)`` with ``keepdims=True`` (Keras's argument)."""

    rank = 2

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        from .reshaping import check_channels_last  # noqa: PLC0415 - reshaping imports base only

        self.data_format = check_channels_last(data_format, type(self).__name__)
        self.keepdims = validation.boolean(keepdims, "keepdims", type(self).__name__)

    def compute_output_shape(self, input_shape):
        self.spatial_shape(input_shape, self.rank)
        return (1,) * self.rank + (input_shape[-1],) if self.keepdims else (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        if self.keepdims:
            config["keepdims"] = True
        return config


class _GlobalAverage(_GlobalPooling):
    def forward(self, x, training=False):
        self.check_input(x)
        return x.mean(axis=tuple(range(1, x.ndim - 1)), keepdims=self.keepdims)

    def backward(self, dy):
        cells = math.prod(self.input_shape[:-1])
        spatial_ones = (dy.shape[0],) + (1,) * self.rank + (dy.shape[-1],)
        return np.broadcast_to((dy / dy.dtype.type(cells)).reshape(spatial_ones),
                               (dy.shape[0], *self.input_shape)).copy()


class _GlobalMax(_GlobalPooling):
    """Ties go to the first position in row-major order: it alone gets the gradient."""

    def forward(self, x, training=False):
        self.check_input(x)
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        self._argmax = flat.argmax(axis=1)
        y = np.take_along_axis(flat, self._argmax[:, None, :], axis=1)[:, 0, :]
        return y.reshape((x.shape[0], *self.output_shape))

    def backward(self, dy):
        n, channels = dy.shape[0], dy.shape[-1]
        dflat = np.zeros((n, math.prod(self.input_shape[:-1]), channels), dtype=dy.dtype)
        np.put_along_axis(dflat, self._argmax[:, None, :], dy.reshape(n, 1, channels), axis=1)
        return dflat.reshape((n, *self.input_shape))


@register_layer
class GlobalAveragePooling2D(_GlobalAverage):
    """Mean over all spatial positions: ``(N, H, W, C) -> (N, C)``."""


@register_layer
class GlobalMaxPooling2D(_GlobalMax):
    """Maximum over all spatial positions: ``(N, H, W, C) -> (N, C)``; ties go to the first."""


@register_layer
class GlobalAveragePooling1D(_GlobalAverage):
    """Mean over the steps of ``(N, L, C)`` sequences: output ``(N, C)``.

    Keras's ``mask`` argument of ``call`` does not exist here (no layer produces masks).
    """

    rank = 1


@register_layer
class GlobalMaxPooling1D(_GlobalMax):
    """Maximum over the steps of ``(N, L, C)`` sequences: output ``(N, C)``."""

    rank = 1


@register_layer
class GlobalAveragePooling3D(_GlobalAverage):
    """Mean over all positions of ``(N, D, H, W, C)`` volumes: output ``(N, C)``."""

    rank = 3


@register_layer
class GlobalMaxPooling3D(_GlobalMax):
    """Maximum over all positions of ``(N, D, H, W, C)`` volumes: output ``(N, C)``."""

    rank = 3


# Keras's short names.
@register_layer
class AvgPool1D(AveragePooling1D):
    """Keras's short name for :class:`AveragePooling1D`."""


@register_layer
class AvgPool2D(AveragePooling):
    """Keras's short name for :class:`AveragePooling2D`."""


@register_layer
class AvgPool3D(AveragePooling3D):
    """Keras's short name for :class:`AveragePooling3D`."""


@register_layer
class MaxPool1D(MaxPooling1D):
    """Keras's short name for :class:`MaxPooling1D`."""


@register_layer
class MaxPool3D(MaxPooling3D):
    """Keras's short name for :class:`MaxPooling3D`."""


@register_layer
class GlobalAvgPool1D(GlobalAveragePooling1D):
    """Keras's short name for :class:`GlobalAveragePooling1D`."""


@register_layer
class GlobalAvgPool2D(GlobalAveragePooling2D):
    """Keras's short name for :class:`GlobalAveragePooling2D`."""


@register_layer
class GlobalAvgPool3D(GlobalAveragePooling3D):
    """Keras's short name for :class:`GlobalAveragePooling3D`."""


@register_layer
class GlobalMaxPool1D(GlobalMaxPooling1D):
    """Keras's short name for :class:`GlobalMaxPooling1D`."""


@register_layer
class GlobalMaxPool2D(GlobalMaxPooling2D):
    """Keras's short name for :class:`GlobalMaxPooling2D`."""


@register_layer
class GlobalMaxPool3D(GlobalMaxPooling3D):
    """Keras's short name for :class:`GlobalMaxPooling3D`."""
