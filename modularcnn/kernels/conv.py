"""Convolution forward and backward as matrix products over copied windows (im2col).

Shapes, for ``r`` spatial axes (r = 2 for images: ``(N, H, W, C)``):

- input ``x``: ``(N, *S, C)``; kernel: ``(*K, C, F)``; bias: ``(F,)``;
- output ``y``: ``(N, *O, F)`` where ``O`` comes from :func:`~modularcnn.kernels.windows.output_spatial_shape`;
- ``cols``: ``(M, prod(K) * C)`` with ``M = N * prod(O)``, one row per output position holding its input
  window. Its column order ``(*K, C)`` matches the kernel's memory layout, so the kernel is used as a
  ``(prod(K) * C, F)`` matrix without a copy.

The same functions serve 1-D, 2-D and 3-D convolutions, dilated ones (``dilation``: the kernel's taps
are ``dilation`` input cells apart, so a window spans ``dilation * (K - 1) + 1`` cells; the window
arithmetic uses that span, see :func:`~modularcnn.kernels.windows.dilated_size`) and grouped ones
(``groups``: the ``C`` input and ``F`` output channels are split into ``groups`` equal slices, and slice
``g`` of the outputs sees only slice ``g`` of the inputs; the kernel is then ``(*K, C / groups, F)``;
depthwise convolution is ``groups = C``). What makes them fast (measured with
``scripts/benchmark.py`` and ``Net.profile``): every copy has a long contiguous innermost run, every
product is one BLAS call on contiguous (or transposed-contiguous) 2-D arrays, and scratch arrays are
reused between batches through a :class:`~modularcnn.kernels.workspace.Workspace`.
"""

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .windows import pad_spatial, padded_shape, unpad_spatial, window_slices
from .workspace import scratch


def kernel_offsets(kernel_size, dilation=None):
    """Every offset inside a window, in the row-major order of the kernel's axes.

    With a ``dilation`` the offsets of the taps are spread out: tap ``i`` sits ``i * dilation`` cells
    from the window's corner.
    """
    dilation = dilation or (1,) * len(kernel_size)
    return list(itertools.product(*(range(0, k * d, d) for k, d in zip(kernel_size, dilation))))


def sliding_windows(xp, kernel_size, stride, out_shape, dilation=None):
    """Read-only strided view of every window of ``xp`` (N, *P, C): shape ``(N, *O, *K, C)``.

    No data is copied: each window position and each offset inside the window is just a stride into
    ``xp``'s memory, read from the array itself so that views work as well as contiguous arrays.
    """
    dilation = dilation or (1,) * len(kernel_size)
    batch_stride, *spatial_strides, channel_stride = xp.strides
    window_strides = tuple(s * st for s, st in zip(spatial_strides, stride))
    tap_strides = tuple(s * d for s, d in zip(spatial_strides, dilation))
    shape = (xp.shape[0], *out_shape, *kernel_size, xp.shape[-1])
    strides = (batch_stride, *window_strides, *tap_strides, channel_stride)
    if xp.flags.c_contiguous:
        # The same view made over xp's buffer (bounds checked by NumPy) without as_strided's Python
        # overhead: 1.2 against 6.7 us, two of them in every one-image LeNet predict (~0.15 ms).
        view = np.ndarray(shape, xp.dtype, xp, 0, strides)
        view.flags.writeable = False
        return view
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


def _is_pointwise(kernel_size, stride, pads):
    """A 1×1 (×1) kernel at stride 1 with no border: every window is one input pixel, so the
    window matrix is the input itself, ``(M, C)``, and dL/dx is ``dL/dy @ kernelᵀ`` (dilation does
    not matter for a single tap)."""
    return (all(k == 1 for k in kernel_size) and all(s == 1 for s in stride)
            and not any(before or after for before, after in pads))


def im2col(x, kernel_size, stride, pads, out_shape, workspace=None, pad_value=0.0,
           dilation=None):
    """Copy every window of ``x`` (N, *S, C) into a matrix ``(M, prod(K) * C)``.

    The border added by ``pads`` holds ``pad_value`` (zero padding by default).

    With several channels the windows are copied in one go from the :func:`sliding_windows` view: its
    innermost runs are ``C`` contiguous values, in both source and destination. With one channel that
    run would be a single value, so the matrix is built transposed instead, ``(prod(K), M)``: each kernel
    offset fills one contiguous row from a strided slice of the input, and the transposed view is
    returned (BLAS multiplies it without a copy). ``dilation`` spreads the taps (default 1).
    """
    batch, channels = x.shape[0], x.shape[-1]
    rows = batch * math.prod(out_shape)
    if _is_pointwise(kernel_size, stride, pads):
        # A 1x1 window at stride 1 without a border is the pixel itself: the input is the matrix.
        return x.reshape(rows, channels)
    xp = pad_spatial(x, pads, value=pad_value, workspace=workspace)
    if channels == 1:
        offsets = kernel_offsets(kernel_size, dilation)
        cols_t = scratch(workspace, "cols_t", (len(offsets), rows), x.dtype)
        for tap, offset in enumerate(offsets):
            cols_t[tap].reshape(batch, *out_shape, 1)[...] = xp[window_slices(offset, stride, out_shape)]
        return cols_t.T
    cols = scratch(workspace, "cols", (batch, *out_shape, *kernel_size, channels), x.dtype)
    np.copyto(cols, sliding_windows(xp, kernel_size, stride, out_shape, dilation))
    return cols.reshape(rows, -1)


def col2im(dcols, x_shape, kernel_size, stride, pads, out_shape, dilation=None):
    """Sum window gradients ``dcols`` (M, prod(K) * C) back onto the input: ``(N, *S, C)``.

    The adjoint of :func:`im2col`. It loops over the ``prod(K)`` kernel offsets only, adding one strided
    slice each time; every input cell receives the gradient of every window that contained it.
    """
    dxp = np.zeros(padded_shape(x_shape, pads), dtype=dcols.dtype)
    dwindows = dcols.reshape(x_shape[0], *out_shape, *kernel_size, x_shape[-1])
    rank = len(kernel_size)
    taps = itertools.product(*(range(k) for k in kernel_size))
    for tap, offset in zip(taps, kernel_offsets(kernel_size, dilation)):
        dxp[window_slices(offset, stride, out_shape)] += dwindows[(slice(None),) * (1 + rank) + tap]
    return unpad_spatial(dxp, pads)


def _grouped_columns(cols, groups, taps):
    """The window matrix ``(M, T * C)`` (columns ordered taps, then channels) as ``groups`` contiguous
    matrices ``(groups, M, T * C / groups)``: group ``g`` keeps channels ``g*C/G ... (g+1)*C/G - 1``."""
    rows = cols.shape[0]
    return np.ascontiguousarray(
        cols.reshape(rows, taps, groups, -1).transpose(2, 0, 1, 3)).reshape(groups, rows, -1)


def grouped_kernel(kernel, groups):
    """The kernel ``(*K, C/groups, F)`` as ``groups`` matrices ``(groups, prod(K) * C/groups, F/groups)``."""
    taps = math.prod(kernel.shape[:-2])
    per_group_in, filters = kernel.shape[-2:]
    return np.ascontiguousarray(
        kernel.reshape(taps, per_group_in, groups, filters // groups).transpose(2, 0, 1, 3)
    ).reshape(groups, taps * per_group_in, filters // groups)


def conv_input_gradient(dy2, kernel, x_shape, stride, pads, out_shape, dilation=None, groups=1):
    """``dL/dx`` (N, *S, C) of a convolution, from ``dy2`` = dL/dy as an ``(M, F)`` matrix.

    Equal to ``col2im(dy2 @ kernel.T)``, but computed offset by offset: one stacked product gives, for
    every kernel offset ``t``, the contiguous ``(M, C)`` block ``dy2 @ kernel[t].T``, which is then added
    to the input positions that offset touched. Reading contiguous blocks instead of every ``prod(K)``-th
    run of ``dcols`` roughly halves the cost of the scatter.
    """
    kernel_size = kernel.shape[:-2]
    channels, filters = kernel.shape[-2:]
    if groups == 1 and _is_pointwise(kernel_size, stride, pads):
        return (dy2 @ kernel.reshape(channels, filters).T).reshape(x_shape)
    offsets = kernel_offsets(kernel_size, dilation)
    if groups == 1 and channels == 1:
        # One output channel: the stacked products would be prod(K) matrix-vector products, several
        # times slower than one (M, F) @ (F, prod(K)) product whose columns are the blocks (strided).
        per_offset = (dy2 @ kernel.reshape(len(offsets), filters).T).T
    elif groups == 1:
        per_offset = np.matmul(dy2, kernel.reshape(len(offsets), channels, filters).transpose(0, 2, 1))
    else:
        # Group g's outputs reach only its own input channels: (G, 1, M, F/G) @ (G, T, F/G, C/G).
        dy_groups = dy2.reshape(len(dy2), groups, filters // groups).transpose(1, 0, 2)[:, None]
        kernel_groups = kernel.reshape(len(offsets), channels, groups, filters // groups)
        per_group = np.matmul(dy_groups, kernel_groups.transpose(2, 0, 3, 1))    # (G, T, M, C/G)
        per_offset = per_group.transpose(1, 2, 0, 3)                               # (T, M, G, C/G)
        channels = channels * groups
    per_offset = per_offset.reshape(len(offsets), x_shape[0], *out_shape, channels)
    dxp = np.zeros(padded_shape(x_shape, pads), dtype=dy2.dtype)
    for tap, offset in enumerate(offsets):
        dxp[window_slices(offset, stride, out_shape)] += per_offset[tap]
    return unpad_spatial(dxp, pads)


def conv_forward(x, kernel, bias, stride, pads, out_shape, workspace=None, pad_value=0.0,
                 dilation=None, groups=1):
    """Convolve ``x`` (N, *S, C) with ``kernel`` (*K, C / groups, F) and add ``bias`` (F,) or None.

    ``x`` is padded by ``pads`` with ``pad_value``; :func:`conv_backward` is the same for any value,
    since the border is a constant.

    Returns ``(y, cols)``: the output (N, *O, F), a new array, and the window matrix that
    :func:`conv_backward` needs (it lives in ``workspace`` when one is given). ``dilation`` (a tuple,
    default 1) spreads the kernel's taps; ``groups`` splits the channels (see the module docstring).
    """
    kernel_size = kernel.shape[:-2]
    cols = im2col(x, kernel_size, stride, pads, out_shape, workspace, pad_value, dilation)
    if groups == 1:
        y = cols @ kernel.reshape(-1, kernel.shape[-1])
    else:
        # One product per group, stacked: (G, M, T * C/G) @ (G, T * C/G, F/G) -> (G, M, F/G).
        per_group = np.matmul(_grouped_columns(cols, groups, math.prod(kernel_size)),
                              grouped_kernel(kernel, groups))
        y = per_group.transpose(1, 0, 2).reshape(len(cols), -1)
    if bias is not None:
        y += bias
    return y.reshape(x.shape[0], *out_shape, kernel.shape[-1]), cols


def conv_backward(dy, cols, kernel, x_shape, stride, pads, need_input_grad=True, dilation=None,
                  groups=1):
    """Gradients of :func:`conv_forward` given ``dy`` (N, *O, F).

    Returns ``(dx, dkernel, dbias)`` with shapes ``x_shape``, ``kernel.shape`` and ``(F,)``; ``dx`` is
    None when ``need_input_grad`` is false (the first layer of a network needs no input gradient).
    """
    filters = kernel.shape[-1]
    dy2 = dy.reshape(-1, filters)
    if groups == 1:
        dkernel = (cols.T @ dy2).reshape(kernel.shape)
    else:
        taps = math.prod(kernel.shape[:-2])
        dy_groups = dy2.reshape(len(dy2), groups, filters // groups).transpose(1, 0, 2)
        per_group = np.matmul(_grouped_columns(cols, groups, taps).transpose(0, 2, 1), dy_groups)
        # (G, T * C/G, F/G) -> (T, C/G, G, F/G): filter g * F/G + f of group g.
        dkernel = per_group.reshape(groups, taps, kernel.shape[-2], filters // groups)
        dkernel = np.ascontiguousarray(dkernel.transpose(1, 2, 0, 3)).reshape(kernel.shape)
    # A product with ones is several times faster than dy2.sum(axis=0) over a narrow (M, F) array.
    dbias = np.ones(len(dy2), dtype=dy2.dtype) @ dy2
    dx = None
    if need_input_grad:
        dx = conv_input_gradient(dy2, kernel, x_shape, stride, pads, dy.shape[1:-1], dilation, groups)
    return dx, dkernel, dbias
