"""Max and average pooling over ``r`` spatial axes of channels-last arrays ``(N, *S, C)``.

Both loop over the ``prod(pool)`` offsets inside a window (4 for a 2×2 pool), each step reading one
strided slice of shape ``(N, *O, C)``; overlapping windows (e.g. 3 with stride 2) need nothing special.
Max pooling remembers which offset won as a small integer per output (not a float mask the size of the
input); ties go to the first offset, as in NumPy's ``argmax`` and PyTorch. The usual 2×2 pool with
stride 2 has its own path, two pairwise maxima with boolean masks, about four times faster; it breaks
a tie first between the window's rows, then its columns. Either way each window's gradient goes to
exactly one cell.
"""

import numpy as np

from .conv import kernel_offsets as _offsets
from .windows import pad_spatial, padded_shape, unpad_spatial, window_slices


def _is_plain_2x2(x_shape, pool_size, stride, pads):
    """The common case with a faster path: 2×2 windows, stride 2, no padding, even height and width."""
    return (tuple(pool_size) == (2, 2) and tuple(stride) == (2, 2) and len(x_shape) == 4
            and not any(b or a for b, a in pads) and x_shape[1] % 2 == 0 and x_shape[2] % 2 == 0)


def _max_pool_2x2_forward(x):
    """2×2 max pool as two pairwise maxima: rows first (long contiguous runs), then columns.

    Returns ``y`` (N, H/2, W/2, C) and the two boolean "second one won" masks the backward needs.
    """
    n, h, w, c = x.shape
    pairs = np.ascontiguousarray(x).reshape(n, h // 2, 2, w // 2, 2, c)
    top, bottom = pairs[:, :, 0], pairs[:, :, 1]                 # (N, H/2, W/2, 2, C)
    bottom_won = np.greater(bottom, top)
    row_max = np.maximum(top, bottom)
    left, right = row_max[..., 0, :], row_max[..., 1, :]          # (N, H/2, W/2, C)
    right_won = np.greater(right, left)
    return np.maximum(left, right), (bottom_won, right_won)


def _max_pool_2x2_backward(dy, masks, x_shape):
    """Route ``dy`` back through the column choice, then the row choice (multiplications by masks)."""
    bottom_won, right_won = masks
    n, h, w, c = x_shape
    by_column = np.empty(bottom_won.shape, dtype=dy.dtype)       # (N, H/2, W/2, 2, C)
    np.multiply(dy, right_won, out=by_column[..., 1, :])
    np.subtract(dy, by_column[..., 1, :], out=by_column[..., 0, :])
    dx = np.empty(x_shape, dtype=dy.dtype)
    pairs = dx.reshape(n, h // 2, 2, w // 2, 2, c)
    np.multiply(by_column, bottom_won, out=pairs[:, :, 1])
    np.subtract(by_column, pairs[:, :, 1], out=pairs[:, :, 0])
    return dx


def max_pool_forward(x, pool_size, stride, pads, out_shape, workspace=None):
    """Maximum of each window. Returns ``(y, route)``: y is (N, *O, C); ``route`` records the winners.

    ``route`` is opaque to callers and goes back into :func:`max_pool_backward`.
    """
    if _is_plain_2x2(x.shape, pool_size, stride, pads):
        return _max_pool_2x2_forward(x)
    xp = pad_spatial(x, pads, value=-np.inf, workspace=workspace)
    offsets = _offsets(pool_size)
    y = xp[window_slices(offsets[0], stride, out_shape)].copy()
    index_type = np.uint8 if len(offsets) < 256 else np.int32
    argmax = np.zeros(y.shape, dtype=index_type)
    better = np.empty(y.shape, dtype=bool)
    for index, offset in enumerate(offsets[1:], start=1):
        candidate = xp[window_slices(offset, stride, out_shape)]
        np.greater(candidate, y, out=better)
        np.maximum(y, candidate, out=y)
        # Offsets come in increasing order, so "index where better, else keep" is a maximum; masked
        # writes (np.copyto(where=), boolean indexing) would be several times slower.
        np.maximum(argmax, better * index_type(index), out=argmax)
    return y, argmax


def max_pool_backward(dy, route, x_shape, pool_size, stride, pads):
    """Route ``dy`` (N, *O, C) to the input cell that was each window's maximum: ``(N, *S, C)``."""
    if _is_plain_2x2(x_shape, pool_size, stride, pads):
        return _max_pool_2x2_backward(dy, route, x_shape)
    argmax = route
    dxp = np.zeros(padded_shape(x_shape, pads), dtype=dy.dtype)
    out_shape = dy.shape[1:-1]
    # Windows that do not overlap each own their cells: write straight into them instead of adding.
    disjoint = all(s >= p for s, p in zip(stride, pool_size))
    won = np.empty(dy.shape, dtype=bool)
    for index, offset in enumerate(_offsets(pool_size)):
        np.equal(argmax, index, out=won)
        cells = dxp[window_slices(offset, stride, out_shape)]
        if disjoint:
            np.multiply(dy, won, out=cells)
        else:
            cells += dy * won
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
    dxp = np.zeros(padded_shape(x_shape, pads), dtype=dy.dtype)
    share = dy / counts
    for offset in _offsets(pool_size):
        dxp[window_slices(offset, stride, dy.shape[1:-1])] += share
    return unpad_spatial(dxp, pads)
