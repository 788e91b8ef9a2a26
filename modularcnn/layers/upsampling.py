"""Upsampling: :class:`UpSampling2D` (nearest or bilinear) and its 1-D and 3-D relatives (nearest)."""

import numpy as np

from .. import validation
from .base import Layer, register_layer


def linear_interpolation_matrix(n, factor):
    """The ``(n * factor, n)`` matrix of half-pixel linear interpolation along one axis (float64).

    Row ``i`` samples ``(i + 0.5) / factor - 0.5`` clamped to ``[0, n - 1]``, mixing the two nearest
    input cells; each row sums to 1.
    """
    source = np.clip((np.arange(n * factor) + 0.5) / factor - 0.5, 0, n - 1)
    low = np.floor(source).astype(np.intp)
    high = np.minimum(low + 1, n - 1)
    weight = source - low
    matrix = np.zeros((n * factor, n))
    rows = np.arange(n * factor)
    np.add.at(matrix, (rows, low), 1 - weight)
    np.add.at(matrix, (rows, high), weight)
    return matrix


@register_layer
class UpSampling2D(Layer):
    """Upsample ``(N, H, W, C)`` images ``size`` times along each spatial axis, as Keras does.

    Output ``(N, H * sh, W * sw, C)``; no parameters.

    - ``interpolation="nearest"`` repeats every pixel; the backward pass sums the gradient over each
      ``sh x sw`` block, since every output cell of a block is a copy of one input cell.
    - ``interpolation="bilinear"`` interpolates linearly along each axis with half-pixel centres, as
      Keras's reference backend TensorFlow (``tf.image.resize``, ``half_pixel_centers=True``) and
      PyTorch's ``align_corners=False`` do: output cell ``i`` samples the input at
      ``(i + 0.5) / s - 0.5``, clamped to ``[0, n - 1]``. Each axis is one product with an
      ``(n * s, n)`` interpolation matrix; the backward pass multiplies by its transpose.

    Parameters
    ----------
    size : int or tuple of int, default 2
        Upsampling factor per spatial axis.
    interpolation : "nearest" or "bilinear"
        Keras's other methods (``"bicubic"``, ``"lanczos3"``, ``"lanczos5"``) are refused.
    """

    rank = 2
    INTERPOLATIONS = ("nearest", "bilinear")

    def __init__(self, size=2, interpolation="nearest", data_format=None, **kwargs):
        super().__init__(**kwargs)
        from .reshaping import check_channels_last  # noqa: PLC0415 - reshaping imports base only

        kind = type(self).__name__
        self.size = validation.normalize_tuple(size, self.rank, "size", kind)
        self.data_format = check_channels_last(data_format, kind)
        allowed = self.INTERPOLATIONS if self.rank == 2 else ("nearest",)
        if interpolation not in allowed:
            raise ValueError(f"{kind}: interpolation must be one of {', '.join(map(repr, allowed))}, "
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

    def build(self, input_shape):
        super().build(input_shape)
        if self.interpolation == "bilinear":
            self._matrices = [linear_interpolation_matrix(n, f)
                              for n, f in zip(self.input_shape[:-1], self.size)]

    def forward(self, x, training=False):
        self.check_input(x)
        if self.interpolation == "bilinear":
            return self._apply(x, [m.astype(x.dtype) for m in self._matrices])
        # Insert a length-1 axis after every spatial axis, broadcast it to the factor, then merge.
        index = (slice(None),) + (slice(None), None) * self.rank + (slice(None),)
        blocks = np.broadcast_to(x[index], self._blocked_shape(x.shape[0]))
        return blocks.reshape((x.shape[0],) + self.output_shape)

    @staticmethod
    def _apply(x, matrices):
        """Multiply spatial axis ``a`` of ``x`` by ``matrices[a]`` (out, in), for every axis."""
        for axis, matrix in enumerate(matrices, start=1):
            x = np.moveaxis(np.tensordot(matrix, x, axes=([1], [axis])), 0, axis)
        return np.ascontiguousarray(x)

    def backward(self, dy):
        if self.interpolation == "bilinear":
            return self._apply(dy, [m.T.astype(dy.dtype) for m in self._matrices])
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
