"""Layers that move values without arithmetic: ZeroPadding1D/2D/3D, Cropping1D/2D/3D and Permute.

All are channels-last, as the rest of the library: a per-sample input is ``(*spatial, channels)``
and padding or cropping applies to the spatial axes only. Their backward passes are the adjoint
index maps (crop the padding away, pad the cropped border with zeros, transpose back).
"""

import numpy as np

from .. import validation
from .base import Layer, register_layer


def check_channels_last(data_format, owner):
    """Refuse Keras's ``data_format="channels_first"``: every layer here is channels-last."""
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{owner}: data_format={data_format!r} is not supported; modularcnn is "
                         "channels-last (data_format='channels_last' or None)")
    return "channels_last"


def border_pairs(value, rank, name, owner):
    """Keras's padding/cropping amounts as ``rank`` ``(before, after)`` pairs of non-negative ints.

    Accepted, as in Keras: an int (every side); for rank 1 a pair ``(before, after)``; for rank 2
    and 3 ``rank`` entries, each an int (symmetric) or a pair. The pairs form ``[[b, a], ...]`` that
    configs store is accepted for every rank.
    """
    if rank == 1:
        expected = "a non-negative int, a pair (before, after) or [[before, after]]"
    else:
        expected = (f"a non-negative int, {rank} non-negative ints or {rank} "
                    "(before, after) pairs")

    def is_count(v):
        return validation.is_integer(v) and v >= 0

    def is_pair(v):
        return isinstance(v, (tuple, list)) and len(v) == 2 and all(is_count(p) for p in v)

    if is_count(value):
        return ((int(value), int(value)),) * rank
    if not isinstance(value, (tuple, list)):
        validation.fail(owner, name, expected, value)
    if rank == 1 and is_pair(value):
        return ((int(value[0]), int(value[1])),)
    if len(value) != rank:
        validation.fail(owner, name, expected, value)
    # Per axis an int (symmetric) or a pair, mixed freely as Keras's standardize_tuple allows.
    if all(is_pair(v) or (rank > 1 and is_count(v)) for v in value):
        return tuple((int(v), int(v)) if is_count(v) else (int(v[0]), int(v[1])) for v in value)
    validation.fail(owner, name, expected, value)


class _Border(Layer):
    """What padding and cropping share: ``rank``, the per-axis pairs and the shape check."""

    rank = 2
    argument = "padding"

    def __init__(self, amounts, data_format=None, **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        self.pairs = border_pairs(amounts, self.rank, self.argument, kind)
        self.data_format = check_channels_last(data_format, kind)

    def get_config(self):
        return {**super().get_config(), self.argument: [list(p) for p in self.pairs]}


class _ZeroPadding(_Border):
    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)

    @property
    def padding(self):
        return self.pairs

    def compute_output_shape(self, input_shape):
        spatial = self.spatial_shape(input_shape, self.rank)
        return tuple(n + b + a for n, (b, a) in zip(spatial, self.pairs)) + (input_shape[-1],)

    def forward(self, x, training=False):
        self.check_input(x)
        return np.pad(x, ((0, 0), *self.pairs, (0, 0)))

    def backward(self, dy):
        inner = tuple(slice(b, n - a) for n, (b, a) in zip(dy.shape[1:-1], self.pairs))
        return dy[(slice(None), *inner, slice(None))]


@register_layer
class ZeroPadding2D(_ZeroPadding):
    """Add rows and columns of zeros around ``(N, H, W, C)`` images (Keras's ``ZeroPadding2D``).

    ``padding``: an int (every side), ``(symmetric_h, symmetric_w)`` or
    ``((top, bottom), (left, right))``; default 1. Output ``(N, H + top + bottom, W + left + right, C)``.
    """


@register_layer
class ZeroPadding1D(_ZeroPadding):
    """Zeros before and after the steps of ``(N, L, C)``; ``padding`` an int or ``(before, after)``."""

    rank = 1


@register_layer
class ZeroPadding3D(_ZeroPadding):
    """Zeros around ``(N, D, H, W, C)`` volumes; ``padding`` an int, 3 ints or 3 pairs."""

    rank = 3


class _Cropping(_Border):
    argument = "cropping"

    def __init__(self, cropping=None, data_format=None, **kwargs):
        super().__init__(self.default if cropping is None else cropping, data_format, **kwargs)

    @property
    def cropping(self):
        return self.pairs

    def compute_output_shape(self, input_shape):
        spatial = self.spatial_shape(input_shape, self.rank)
        out = tuple(n - b - a for n, (b, a) in zip(spatial, self.pairs))
        if any(o < 1 for o in out):
            raise ValueError(f"{self.describe()}: cropping {[list(p) for p in self.pairs]} leaves "
                             f"nothing of an input of shape {tuple(input_shape)}")
        return out + (input_shape[-1],)

    def _inner(self):
        return (slice(None),) + tuple(slice(b, n - a) for n, (b, a) in
                                      zip(self.input_shape[:-1], self.pairs)) + (slice(None),)

    def forward(self, x, training=False):
        self.check_input(x)
        return x[self._inner()]

    def backward(self, dy):
        dx = np.zeros((dy.shape[0], *self.input_shape), dtype=dy.dtype)
        dx[self._inner()] = dy
        return dx


@register_layer
class Cropping2D(_Cropping):
    """Remove rows and columns at the border of ``(N, H, W, C)`` images (Keras's ``Cropping2D``).

    ``cropping``: an int, ``(symmetric_h, symmetric_w)`` or ``((top, bottom), (left, right))``;
    default none. Output ``(N, H - top - bottom, W - left - right, C)``.
    """

    default = ((0, 0), (0, 0))


@register_layer
class Cropping1D(_Cropping):
    """Remove steps at both ends of ``(N, L, C)``; ``cropping`` an int or ``(before, after)``,
    default ``(1, 1)`` as in Keras."""

    rank = 1
    default = (1, 1)


@register_layer
class Cropping3D(_Cropping):
    """Remove the border of ``(N, D, H, W, C)`` volumes; default one cell on every side, as in Keras."""

    rank = 3
    default = ((1, 1), (1, 1), (1, 1))


@register_layer
class Permute(Layer):
    """Reorder the axes of each sample (Keras's ``Permute``): ``dims`` is a permutation of
    ``1 .. rank``, numbered from 1 because axis 0 is the batch axis.

    ``Permute((2, 1))`` turns ``(N, L, C)`` into ``(N, C, L)``.
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        expected = "a permutation of 1, 2, ... (the batch axis 0 is not permuted)"
        if not isinstance(dims, (tuple, list)) or not dims or not all(
                validation.is_integer(d) for d in dims):
            validation.fail("Permute", "dims", expected, dims)
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            validation.fail("Permute", "dims", expected, dims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise ValueError(f"{self.describe()}: dims {self.dims} permute {len(self.dims)} axes, but "
                             f"the per-sample input {tuple(input_shape)} has {len(input_shape)}")
        return tuple(input_shape[d - 1] for d in self.dims)

    def forward(self, x, training=False):
        self.check_input(x)
        return x.transpose(0, *self.dims)

    def backward(self, dy):
        return dy.transpose(0, *(int(i) + 1 for i in np.argsort(self.dims)))

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}
