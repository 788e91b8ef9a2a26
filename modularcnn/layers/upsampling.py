"""Nearest-neighbour upsampling: :class:`UpSampling2D` and its 1-D and 3-D relatives."""

import numpy as np

from .. import validation
from .base import Layer, register_layer


@register_layer
class UpSampling2D(Layer):
    """Repeat every pixel ``size`` times along each spatial axis (nearest neighbour), as in Keras.

    Input ``(N, H, W, C)``, output ``(N, H * sh, W * sw, C)``; no parameters. The backward pass sums the
    gradient over each ``sh x sw`` block, since every output cell of a block is a copy of one input cell.

    Parameters
    ----------
    size : int or tuple of int, default 2
        Upsampling factor per spatial axis.
    interpolation : "nearest"
        Keras's argument; only nearest-neighbour is implemented.
    """

    rank = 2

    def __init__(self, size=2, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = validation.normalize_tuple(size, self.rank, "size", type(self).__name__)
        if interpolation != "nearest":
            raise ValueError(f"{type(self).__name__}: only interpolation='nearest' is implemented, "
                             f"got {interpolation!r}")
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape):
        if len(input_shape) != self.rank + 1:
            raise ValueError(
                f"{self.describe()}: expected a per-sample input of rank {self.rank + 1} "
                f"(spatial axes and channels), got shape {tuple(input_shape)}"
            )
        return tuple(n * s for n, s in zip(input_shape[:-1], self.size)) + (input_shape[-1],)

    def _blocked_shape(self, batch):
        """``(N, S1, f1, S2, f2, ..., C)``: the output with each upsampling block on its own axis."""
        shape = [batch]
        for n, factor in zip(self.input_shape[:-1], self.size):
            shape += [n, factor]
        return tuple(shape) + (self.input_shape[-1],)

    def forward(self, x, training=False):
        self.check_input(x)
        # Insert a length-1 axis after every spatial axis, broadcast it to the factor, then merge.
        index = (slice(None),) + (slice(None), None) * self.rank + (slice(None),)
        blocks = np.broadcast_to(x[index], self._blocked_shape(x.shape[0]))
        return blocks.reshape((x.shape[0],) + self.output_shape)

    def backward(self, dy):
        blocks = dy.reshape(self._blocked_shape(dy.shape[0]))
        return blocks.sum(axis=tuple(range(2, 2 * self.rank + 1, 2)))

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "interpolation": self.interpolation}


@register_layer
class UpSampling1D(UpSampling2D):
    """Repeat every step of ``(N, L, C)`` sequences ``size`` times: output ``(N, L * size, C)``."""

    rank = 1


@register_layer
class UpSampling3D(UpSampling2D):
    """Repeat every voxel of ``(N, D, H, W, C)`` volumes ``size`` times along each spatial axis."""

    rank = 3
