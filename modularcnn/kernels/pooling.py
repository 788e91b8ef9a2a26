"""Max and average pooling over ``r`` spatial axes of channels-last arrays ``(N, *S, C)``.

Both loop over the ``prod(pool)`` offsets inside a window (4 for a 2×2 pool), each step reading one
strided slice of shape ``(N, *O, C)``; overlapping windows (e.g. 3 with stride 2) need nothing special.
Max pooling remembers which offset won as a small integer per output (not a float mask the size of the
input); ties go to the first offset, as in NumPy's ``argmax`` and PyTorch.
"""

import itertools

import numpy as np

from .windows import pad_spatial, unpad_spatial, window_slices


def _offsets(pool_size):
    return list(itertools.product(*(range(p) for p in pool_size)))


def _padded_shape(x_shape, pads):
    return (x_shape[0],) + tuple(
        n + before + after for n, (before, after) in zip(x_shape[1:-1], pads)
    ) + (x_shape[-1],)


def max_pool_forward(x, pool_size, stride, pads, out_shape):
    """Maximum of each window. Returns ``(y, argmax)``, both (N, *O, C); argmax indexes the offsets."""
    xp = pad_spatial(x, pads, value=-np.inf)
    offsets = _offsets(pool_size)
    y = xp[window_slices(offsets[0], stride, out_shape)].copy()
    argmax = np.zeros(y.shape, dtype=np.uint8 if len(offsets) < 256 else np.int32)
    for index, offset in enumerate(offsets[1:], start=1):
        candidate = xp[window_slices(offset, stride, out_shape)]
        better = candidate > y
        np.copyto(y, candidate, where=better)
        argmax[better] = index
    return y, argmax


def max_pool_backward(dy, argmax, x_shape, pool_size, stride, pads):
    """Route ``dy`` (N, *O, C) to the input cell that was each window's maximum: ``(N, *S, C)``."""
    dxp = np.zeros(_padded_shape(x_shape, pads), dtype=dy.dtype)
    out_shape = dy.shape[1:-1]
    for index, offset in enumerate(_offsets(pool_size)):
        dxp[window_slices(offset, stride, out_shape)] += np.where(argmax == index, dy, 0)
    return unpad_spatial(dxp, pads)


def window_counts(x_shape, pool_size, stride, pads, out_shape, dtype):
    """How many real (unpadded) input cells each window covers: ``(1, *O, 1)``.

    Average pooling divides by this, so padded cells do not drag averages towards zero (Keras's "same").
    """
    ones = np.ones((1,) + tuple(x_shape[1:-1]) + (1,), dtype=dtype)
    padded = pad_spatial(ones, pads, value=0.0)
    counts = np.zeros((1,) + tuple(out_shape) + (1,), dtype=dtype)
    for offset in _offsets(pool_size):
        counts += padded[window_slices(offset, stride, out_shape)]
    return counts


def avg_pool_forward(x, pool_size, stride, pads, out_shape):
    """Mean of the real cells of each window. Returns ``(y, counts)``; y is (N, *O, C)."""
    xp = pad_spatial(x, pads, value=0.0)
    y = np.zeros((x.shape[0],) + tuple(out_shape) + (x.shape[-1],), dtype=x.dtype)
    for offset in _offsets(pool_size):
        y += xp[window_slices(offset, stride, out_shape)]
    counts = window_counts(x.shape, pool_size, stride, pads, out_shape, x.dtype)
    y /= counts
    return y, counts


def avg_pool_backward(dy, counts, x_shape, pool_size, stride, pads):
    """Spread each window's gradient evenly over its real cells: ``(N, *S, C)``."""
    dxp = np.zeros(_padded_shape(x_shape, pads), dtype=dy.dtype)
    share = dy / counts
    for offset in _offsets(pool_size):
        dxp[window_slices(offset, stride, dy.shape[1:-1])] += share
    return unpad_spatial(dxp, pads)
