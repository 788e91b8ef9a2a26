"""Fused execution of ``Convolutional(activation="relu")`` followed by a 2×2 ``MaxPooling``.

The two layers stay separate objects (their own parameters, summary rows and saved arrays); the network
just runs the pair as one step, which saves most of the memory traffic between them:

- im2col rows are ordered by *pool-window slot* first — row ``(a, b, n, i, j)`` holds the window of
  output pixel ``(2i + a, 2j + b)`` of sample ``n`` — so the convolution's output ``(M, F)`` is four
  contiguous ``(Q, F)`` planes, one per slot, and pooling is three element-wise maxima of contiguous
  arrays whose result is already the channels-last ``(N, H/2, W/2, F)`` output;
- bias and ReLU are applied *after* the pool, on a quarter of the values; both commute with the maximum
  (``max(z) + b = max(z + b)`` and ``relu(max(z)) = max(relu(z))``), so the result is exactly the same.

Ties in the pool go to the first slot in row-major order, as in the unfused layer. ``Net(...).fusion =
False`` turns fusion off (the tests compare both ways).
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .activations import ReLU
from .kernels.conv import conv_input_gradient
from .kernels.windows import pad_spatial
from .layers.convolutional import Convolutional
from .layers.pooling import MaxPooling


def can_fuse(conv, pool):
    """True when ``conv`` then ``pool`` is a stride-1 2-D convolution with ReLU and a plain 2×2 max pool."""
    return (isinstance(conv, Convolutional) and conv.rank == 2 and type(conv.activation) is ReLU
            and conv.stride == (1, 1) and isinstance(pool, MaxPooling) and pool.rank == 2
            and pool.pool_size == (2, 2) and pool.stride == (2, 2)
            and all(p == (0, 0) for p in pool.pads)
            and conv.out_spatial[0] % 2 == 0 and conv.out_spatial[1] % 2 == 0)


def _slot_major_windows(xp, kernel_size, out_shape):
    """View of the windows of ``xp`` (N, Hp, Wp, C) as ``(2, 2, N, Ho/2, Wo/2, kh, kw, C)``."""
    s_n, s_h, s_w, s_c = xp.strides
    half_h, half_w = out_shape[0] // 2, out_shape[1] // 2
    shape = (2, 2, xp.shape[0], half_h, half_w, *kernel_size, xp.shape[-1])
    strides = (s_h, s_w, s_n, 2 * s_h, 2 * s_w, s_h, s_w, s_c)
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


class ConvReluPool:
    """One fused step: forward ``(N, H, W, C) -> (N, Ho/2, Wo/2, F)`` and its backward.

    It writes the gradients into ``conv.grads`` (the pool has none) and honours
    ``conv.input_grad_needed``.
    """

    def __init__(self, conv, pool):
        self.conv, self.pool = conv, pool
        self.layers = (conv, pool)

    def forward(self, x, training=False):
        conv = self.conv
        conv.check_input(x)
        kernel = conv.params["kernel"]
        kh, kw, channels, filters = kernel.shape
        out_h, out_w = conv.out_spatial
        batch = len(x)
        quarter = batch * (out_h // 2) * (out_w // 2)
        xp = pad_spatial(x, conv.pads, workspace=conv.workspace)
        windows = _slot_major_windows(xp, (kh, kw), (out_h, out_w))
        if channels == 1:
            # One channel: build the matrix transposed, (K, M), so every copy has long runs.
            cols_t = conv.workspace.get("fused_cols_t", (kh * kw, 4 * quarter), x.dtype)
            np.copyto(cols_t.reshape(kh, kw, 2, 2, batch, out_h // 2, out_w // 2),
                      windows[..., 0].transpose(5, 6, 0, 1, 2, 3, 4))
            cols = cols_t.T
        else:
            cols = conv.workspace.get("fused_cols", (4 * quarter, kh * kw * channels), x.dtype)
            np.copyto(cols.reshape(windows.shape), windows)
        slots = (cols @ kernel.reshape(-1, filters)).reshape(4, quarter, filters)
        top_left, top_right, bottom_left, bottom_right = slots
        right_won_top = np.greater(top_right, top_left)
        np.maximum(top_left, top_right, out=top_left)
        right_won_bottom = np.greater(bottom_right, bottom_left)
        np.maximum(bottom_left, bottom_right, out=bottom_left)
        bottom_won = np.greater(bottom_left, top_left)
        pooled = np.maximum(top_left, bottom_left)
        if conv.use_bias:
            pooled += conv.params["bias"]
        positive = pooled > 0
        y = np.maximum(pooled, 0, out=pooled)
        self._cache = (x.shape, cols, right_won_top, right_won_bottom, bottom_won, positive)
        return y.reshape(batch, out_h // 2, out_w // 2, filters)

    def backward(self, dy):
        conv = self.conv
        x_shape, cols, right_won_top, right_won_bottom, bottom_won, positive = self._cache
        kernel = conv.params["kernel"]
        filters = kernel.shape[-1]
        out_h, out_w = conv.out_spatial
        d = dy.reshape(-1, filters) * positive                        # through the ReLU, (Q, F)
        if conv.use_bias:
            conv.grads["bias"] = np.ones(len(d), dtype=d.dtype) @ d
        d_slots = np.empty((4,) + d.shape, dtype=d.dtype)           # through the pool, per slot
        to_bottom = d * bottom_won
        d -= to_bottom
        np.multiply(d, right_won_top, out=d_slots[1])
        np.subtract(d, d_slots[1], out=d_slots[0])
        np.multiply(to_bottom, right_won_bottom, out=d_slots[3])
        np.subtract(to_bottom, d_slots[3], out=d_slots[2])
        dz = d_slots.reshape(-1, filters)
        conv.grads["kernel"] = (cols.T @ dz).reshape(kernel.shape)
        if not conv.input_grad_needed:
            return None
        # Back to channels-last row order, (N, Ho, Wo, F), for the input gradient.
        batch = x_shape[0]
        dz_nhwc = np.ascontiguousarray(
            d_slots.reshape(2, 2, batch, out_h // 2, out_w // 2, filters).transpose(2, 3, 0, 4, 1, 5)
        ).reshape(-1, filters)
        return conv_input_gradient(dz_nhwc, kernel, x_shape, conv.stride, conv.pads, (out_h, out_w))


def execution_plan(layers, fuse=True):
    """The steps a network runs: each layer alone, or a fusable conv + pool pair as one step."""
    steps, i = [], 0
    while i < len(layers):
        if fuse and i + 1 < len(layers) and can_fuse(layers[i], layers[i + 1]):
            steps.append(ConvReluPool(layers[i], layers[i + 1]))
            i += 2
        else:
            steps.append(layers[i])
            i += 1
    return steps


def step_layers(step):
    """The layers a step runs (one, or two for a fused pair)."""
    return step.layers if isinstance(step, ConvReluPool) else (step,)


