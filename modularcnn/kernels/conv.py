"""Convolution forward and backward as matrix products over copied windows (im2col / col2im).

Shapes, for ``r`` spatial axes (r = 2 for images: ``(N, H, W, C)``):

- input ``x``: ``(N, *S, C)``; kernel: ``(*K, C, F)``; bias: ``(F,)``;
- output ``y``: ``(N, *O, F)`` where ``O`` comes from :func:`~modularcnn.kernels.windows.output_spatial_shape`;
- ``cols``: ``(N * prod(O), prod(K) * C)``, one row per output position holding its input window. Its
  column order ``(*K, C)`` matches the kernel's memory layout, so the kernel is used as a
  ``(prod(K) * C, F)`` matrix without a copy.

The same functions serve 1-D, 2-D and 3-D convolutions.
"""

import itertools

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .windows import pad_spatial, unpad_spatial, window_slices


def sliding_windows(xp, kernel_size, stride, out_shape):
    """Read-only strided view of every window of ``xp`` (N, *P, C): shape ``(N, *O, *K, C)``.

    No data is copied: each window position and each offset inside the window is just a stride into
    ``xp``'s memory, read from the array itself so that views work as well as contiguous arrays.
    """
    batch_stride, *spatial_strides, channel_stride = xp.strides
    window_strides = tuple(s * st for s, st in zip(spatial_strides, stride))
    shape = (xp.shape[0], *out_shape, *kernel_size, xp.shape[-1])
    strides = (batch_stride, *window_strides, *spatial_strides, channel_stride)
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


def im2col(x, kernel_size, stride, pads, out_shape):
    """Copy every window of ``x`` (N, *S, C) into a matrix ``(N * prod(O), prod(K) * C)``."""
    xp = pad_spatial(x, pads)
    windows = sliding_windows(xp, kernel_size, stride, out_shape)
    rows = x.shape[0] * int(np.prod(out_shape))
    return windows.reshape(rows, -1)


def col2im(dcols, x_shape, kernel_size, stride, pads, out_shape):
    """Sum window gradients ``dcols`` (N * prod(O), prod(K) * C) back onto the input: ``(N, *S, C)``.

    The adjoint of :func:`im2col`. It loops over the ``prod(K)`` kernel offsets only, adding one strided
    slice each time; every input cell receives the gradient of every window that contained it.
    """
    batch, channels = x_shape[0], x_shape[-1]
    padded_shape = (batch,) + tuple(
        n + before + after for n, (before, after) in zip(x_shape[1:-1], pads)
    ) + (channels,)
    dxp = np.zeros(padded_shape, dtype=dcols.dtype)
    dwindows = dcols.reshape(batch, *out_shape, *kernel_size, channels)
    rank = len(kernel_size)
    for offset in itertools.product(*(range(k) for k in kernel_size)):
        dxp[window_slices(offset, stride, out_shape)] += dwindows[(slice(None),) * (1 + rank) + offset]
    return unpad_spatial(dxp, pads)


def conv_forward(x, kernel, bias, stride, pads, out_shape):
    """Convolve ``x`` (N, *S, C) with ``kernel`` (*K, C, F) and add ``bias`` (F,) or None.

    Returns ``(y, cols)``: the output (N, *O, F) and the window matrix that :func:`conv_backward` needs.
    """
    kernel_size = kernel.shape[:-2]
    cols = im2col(x, kernel_size, stride, pads, out_shape)
    y = cols @ kernel.reshape(-1, kernel.shape[-1])
    if bias is not None:
        y += bias
    return y.reshape(x.shape[0], *out_shape, kernel.shape[-1]), cols


def conv_backward(dy, cols, kernel, x_shape, stride, pads, need_input_grad=True):
    """Gradients of :func:`conv_forward` given ``dy`` (N, *O, F).

    Returns ``(dx, dkernel, dbias)`` with shapes ``x_shape``, ``kernel.shape`` and ``(F,)``; ``dx`` is
    None when ``need_input_grad`` is false (the first layer of a network needs no input gradient).
    """
    filters = kernel.shape[-1]
    out_shape = dy.shape[1:-1]
    dy2 = dy.reshape(-1, filters)
    kernel2 = kernel.reshape(-1, filters)
    dkernel = (cols.T @ dy2).reshape(kernel.shape)
    dbias = dy2.sum(axis=0)
    dx = None
    if need_input_grad:
        dcols = dy2 @ kernel2.T
        dx = col2im(dcols, x_shape, kernel.shape[:-2], stride, pads, out_shape)
    return dx, dkernel, dbias
