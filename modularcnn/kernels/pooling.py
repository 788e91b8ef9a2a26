"""Max and average pooling over ``r`` spatial axes of channels-last arrays ``(N, *S, C)``.

Both loop over the ``prod(pool)`` offsets inside a window (4 for a 2×2 pool), each step reading one
strided slice of shape ``(N, *O, C)``; overlapping windows (e.g. 3 with stride 2) need nothing special.
Max pooling remembers which offset won as a small integer per output (not a float mask the size of the
input); ties go to the first offset, as in NumPy's ``argmax`` and PyTorch. The usual 2×2 pool with
stride 2 has its own path, pairwise maxima over the four *quarters* of the windows (one plane per cell
of the window) with boolean masks, about four times faster; the fused conv + pool steps
(:mod:`modularcnn.fusion`) use the same two functions on planes they compute directly. Ties go to the
first cell in row-major order on every path, and each window's gradient goes to exactly one cell.

Average pooling whose windows tile the input (stride equal to the pool size, no padding: the usual
2×2 pool) has its own pair too, :func:`tiled_avg_pool_forward` and its backward, which the
planner's ``AveragePoolStep`` runs (:mod:`modularcnn.fast_steps`).
"""

import math

import numpy as np

from .conv import kernel_offsets as _offsets
from .windows import pad_spatial, padded_shape, unpad_spatial, window_slices


def _is_plain_2x2(x_shape, pool_size, stride, pads):
    """The common case with a faster path: 2×2 windows, stride 2, no padding, even height and width."""
    return (tuple(pool_size) == (2, 2) and tuple(stride) == (2, 2) and len(x_shape) == 4
            and not any(b or a for b, a in pads) and x_shape[1] % 2 == 0 and x_shape[2] % 2 == 0)


def window_quarters(a):
    """The four cells of every 2×2 window of ``a`` (N, H, W, C), H and W even, as four views
    ``(N, H/2, W/2, C)`` in row-major order: top-left, top-right, bottom-left, bottom-right."""
    n, h, w, c = a.shape
    cells = a.reshape(n, h // 2, 2, w // 2, 2, c)
    return [cells[:, :, row, :, column] for row in (0, 1) for column in (0, 1)]


def max_of_quarters(quarters, route=True, overwrite=False):
    """Maximum over the four ``quarters`` of 2×2 windows (same-shape arrays, in row-major order).

    Returns ``(pooled, route)``. ``route`` holds three boolean masks, which of each pair won (right over
    left in both rows, then bottom over top), so ties go to the first cell in row-major order; it is
    None when not asked for. With ``overwrite`` the top-left and bottom-left quarters (scratch arrays
    of the caller) hold the row maxima, and ``pooled`` is the top-left one.
    """
    top_left, top_right, bottom_left, bottom_right = quarters
    masks = None
    if route:
        masks = (np.greater(top_right, top_left), np.greater(bottom_right, bottom_left))
    top = np.maximum(top_left, top_right, out=top_left if overwrite else None)
    bottom = np.maximum(bottom_left, bottom_right, out=bottom_left if overwrite else None)
    if route:
        masks += (np.greater(bottom, top),)
    return np.maximum(top, bottom, out=top), masks


def route_to_quarters(d, route, out):
    """Send the pooled gradient ``d`` to the winning cell of each window: writes the four arrays of
    ``out`` (quarters in row-major order, like ``d`` in shape) and returns ``out``. ``d`` is only read."""
    right_won_top, right_won_bottom, bottom_won = route
    top_left, top_right, bottom_left, bottom_right = out
    np.multiply(d, bottom_won, out=bottom_left)           # the bottom row's share
    np.subtract(d, bottom_left, out=top_left)             # the top row's share
    np.multiply(top_left, right_won_top, out=top_right)
    top_left -= top_right
    np.multiply(bottom_left, right_won_bottom, out=bottom_right)
    bottom_left -= bottom_right
    return out


def max_pool_forward(x, pool_size, stride, pads, out_shape, workspace=None):
    """Maximum of each window. Returns ``(y, route)``: y is (N, *O, C); ``route`` records the winners.

    ``route`` is opaque to callers and goes back into :func:`max_pool_backward`.
    """
    if _is_plain_2x2(x.shape, pool_size, stride, pads):
        return max_of_quarters(window_quarters(x))
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
        dx = np.empty(x_shape, dtype=dy.dtype)
        route_to_quarters(dy, route, window_quarters(dx))
        return dx
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


# -- average pooling whose windows tile the input ------------------------------------------------------

#: Up to this many channels the last spatial axis is averaged by one matrix product with stacked
#: identities (rows of k * C values), since a strided window slice would have inner runs of only C
#: values; 64 x 28 x 28 x 6, 2 x 2, one thread: forward 0.20 against 0.39 ms for the slices, backward
#: 0.14 against 0.18 ms for the broadcast; from 16 channels the slices and the broadcast are as fast.
NARROW_CHANNELS = 8


def tiles_input(pool_size, stride, pads):
    """True when pooling windows tile the input: stride equal to the pool size, no padding."""
    return tuple(stride) == tuple(pool_size) and not any(b or a for b, a in pads)


def _covered(pool_size, out_shape):
    """The index of the cells that some window covers (the last windows' cells past the edge of a
    "valid" pool are left out)."""
    return (slice(None),) + tuple(slice(0, o * k) for o, k in zip(out_shape, pool_size)) + (slice(None),)


def _stacked_identities(k, channels, cells, dtype):
    """``(k * C, C)``: ``k`` identity matrices stacked and divided by ``cells``: a row of ``k`` cells
    of ``C`` channels times it is their sum over ``cells``; its transpose spreads one cell over ``k``."""
    return np.tile(np.eye(channels, dtype=dtype), (k, 1)) / dtype.type(cells)


def tiled_avg_pool_forward(x, pool_size):
    """Mean of each window of ``x`` (N, *S, C) when the windows tile it (:func:`tiles_input`):
    ``(N, *O, C)`` with ``O = S // pool_size``. No window is copied.

    With few channels every spatial axis but the last is summed as an axis of a reshaped view (its
    inner run is the rest of the row: 168 values for 28 x 6, not 6), and the last one, with the
    division, is one matrix product with :func:`_stacked_identities`. With more channels the
    ``prod(pool_size)`` strided window slices are added, as :func:`avg_pool_forward` does, without
    its zero start and per-window counts.
    """
    n, *spatial, channels = x.shape
    out = [s // k for s, k in zip(spatial, pool_size)]
    cells = math.prod(pool_size)
    if channels > NARROW_CHANNELS:
        offsets = _offsets(pool_size)
        y = x[window_slices(offsets[0], pool_size, out)].copy()
        for offset in offsets[1:]:
            y += x[window_slices(offset, pool_size, out)]
        y *= x.dtype.type(1 / cells)
        return y
    a = x[_covered(pool_size, out)]
    for axis in range(len(out) - 1):
        lead = (n, *out[:axis])
        a = a.reshape(*lead, out[axis], pool_size[axis], -1).sum(axis=len(lead) + 1)
    k = pool_size[-1]
    y = a.reshape(-1, k * channels) @ _stacked_identities(k, channels, cells, x.dtype)
    return y.reshape(n, *out, channels)


def tiled_avg_pool_backward(dy, x_shape, pool_size):
    """The gradient of :func:`tiled_avg_pool_forward`: each window's ``dy`` (N, *O, C) spread evenly
    over its cells, zero on cells no window covers: ``(N, *S, C)``. Each axis is one broadcast copy
    (few channels: the last one a product with the transposed identities), no strided writes."""
    n, *out, channels = dy.shape
    k, cells = pool_size[-1], math.prod(pool_size)
    if channels > NARROW_CHANNELS:
        share = dy / dy.dtype.type(cells)
        a = np.broadcast_to(share.reshape(-1, 1, channels), (share.size // channels, k, channels))
    else:
        a = dy.reshape(-1, channels) @ _stacked_identities(k, channels, cells, dy.dtype).T
    a = a.reshape(n, *out[:-1], -1)
    for axis in reversed(range(len(out) - 1)):
        # (N, O_0, .., O_axis, rest) -> (N, O_0, .., O_axis * k_axis * rest): each row k_axis times.
        lead = a.shape[:axis + 2]
        a = np.broadcast_to(a[..., None, :], (*lead, pool_size[axis], a.shape[-1])).reshape(*lead[:-1], -1)
    covered = tuple(o * p for o, p in zip(out, pool_size))
    a = a.reshape(n, *covered, channels)
    if covered == tuple(x_shape[1:-1]) and a.flags.writeable:
        return a            # a new array (only 1-cell pools leave a read-only broadcast view)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    dx[_covered(pool_size, out)] = a
    return dx
