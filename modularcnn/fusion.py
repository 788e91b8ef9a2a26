"""Fused execution of ``Convolutional(activation="relu")`` followed by a 2×2 ``MaxPooling``.

The two layers stay separate objects (their own parameters, summary rows and saved arrays); the network
just runs the pair as one step, which saves most of the memory traffic between them. Every 2×2 pool
window covers four convolution outputs, its four *slots* ``(a, b)`` (top-left, top-right, bottom-left,
bottom-right); the step computes the four slots of every pool window as four contiguous planes, so that
pooling is three element-wise maxima of contiguous arrays. Bias and ReLU are applied *after* the pool,
on a quarter of the values; both commute with the maximum (``max(z) + b = max(z + b)`` and
``relu(max(z)) = max(relu(z))``), so the result is exactly the same.

Three layouts, chosen by the kernel and the number of input channels ``C`` (measured with
``Net.profile``):

- **3×3 kernels, 6 channels or more, training** (:class:`WinogradConvReluPool`): Winograd's
  F(2×2, 3×3) (:mod:`modularcnn.kernels.winograd`) computes outputs in 2×2 blocks, which are exactly
  the pool windows; its four output planes are the four slots, and the products do 16/36 of the
  arithmetic.
- **Several channels otherwise, and in inference** (:class:`SlotMajorConvReluPool`): im2col rows
  are ordered by slot first — row ``(a, b, n, i, j)`` holds the window of output pixel
  ``(2i + a, 2j + b)`` of sample ``n`` — so the product with the kernel, ``(4Q, K) @ (K, F)``, is four
  ``(Q, F)`` planes, already channels-last.
- **One channel** (:class:`PatchConvReluPool`): a window row would be ``kw`` single values, each copied on
  its own. Instead, each pool window reads one ``(kh+1) × (kw+1)`` *patch* (the union of its four
  windows, at stride 2), a quarter of the copying; the kernel is expanded to four shifted copies padded
  with zeros, ``(4F, (kh+1)(kw+1))``, and one wide product gives the ``(4, F, Q)`` slot planes.

Ties in the pool go to the first slot in row-major order, as in the unfused layer. ``Net(...).fusion =
False`` turns fusion off (the tests compare both ways).
"""

import numpy as np

from .activations import ReLU
from .kernels import winograd
from .kernels.conv import col2im, conv_input_gradient, sliding_windows
from .kernels.pooling import max_of_quarters, route_to_quarters
from .kernels.windows import pad_spatial, padded_shape
from .layers.convolutional import Convolutional, in_sample_slices
from .layers.pooling import MaxPooling


def can_fuse(conv, pool):
    """True when ``conv`` then ``pool`` is a stride-1 2-D convolution with ReLU and zero padding, and a
    plain 2×2 max pool."""
    return (isinstance(conv, Convolutional) and conv.rank == 2 and type(conv.activation) is ReLU
            and conv.stride == (1, 1) and conv.pad_value == 0
            and conv.dilation_rate == (1, 1) and conv.groups == 1
            and isinstance(pool, MaxPooling) and pool.rank == 2
            and pool.pool_size == (2, 2) and pool.stride == (2, 2)
            and all(p == (0, 0) for p in pool.pads)
            and conv.out_spatial[0] % 2 == 0 and conv.out_spatial[1] % 2 == 0)


class ConvReluPool:
    """One fused step: forward ``(N, H, W, C) -> (N, Ho/2, Wo/2, F)`` and its backward.

    Subclasses lay out the computation; this class holds the pair. The step writes the gradients into
    ``conv.grads`` (the pool has none) and honours ``conv.input_grad_needed``.
    """

    def __init__(self, conv, pool):
        self.conv, self.pool = conv, pool
        self.layers = (conv, pool)
        self.pooled_shape = (conv.out_spatial[0] // 2, conv.out_spatial[1] // 2)
        self.kernel_size = conv.filter_size

    @staticmethod
    def for_layers(conv, pool):
        """The fused step for ``conv`` and ``pool``, in the layout that suits the input's channels."""
        if conv.input_shape[-1] == 1:
            return PatchConvReluPool(conv, pool)
        if conv.filter_size == (3, 3) and conv.input_shape[-1] >= WinogradConvReluPool.MIN_CHANNELS:
            return WinogradConvReluPool(conv, pool)
        return SlotMajorConvReluPool(conv, pool)

    def forward(self, x, training=False):
        """``(N, H, W, C) -> (N, Ho/2, Wo/2, F)``. In inference, a batch whose window matrix would
        exceed ``Convolutional.INFERENCE_WINDOW_BYTES`` goes a slice of samples at a time, which
        bounds memory (10,000 images in batches of 1,000 would otherwise need 225 MB for the Keras
        example CNN's second layer)."""
        self.conv.check_input(x)
        self._training = training
        if training:
            self._inference_input = None
            return self._forward(x)
        # Inference keeps nothing for a backward pass (no pool routes or ReLU masks: a single image
        # takes 8 operations fewer); a backward pass after it redoes the forward pass in training mode.
        self._inference_input = x
        y, _ = in_sample_slices(self._forward, x, self.scratch_values(1) * x.itemsize,
                                (*self.pooled_shape, self.conv.filters),
                                self.conv.INFERENCE_WINDOW_BYTES)
        return y

    def backward(self, dy):
        if self._inference_input is not None:
            self._training = True
            self._forward(self._inference_input)
            self._inference_input = None
        return self._backward(dy)

    #: Whether the slot planes are ``(4, F, Q)`` (filters first) rather than ``(4, Q, F)``.
    filters_first = False

    # Every layout shares what follows the product: pool, bias and ReLU, and their backward.

    def _pool_activate(self, slots):
        """Pool the slot planes ``slots`` (4, Q, F) or (4, F, Q), then add the bias and apply ReLU.

        Returns ``(y, mask)``: the output ``(Q, F)`` or ``(F, Q)`` and what the backward pass needs of it
        (None in inference).
        """
        pooled, route = max_of_quarters(slots, route=self._training, overwrite=True)
        if self.conv.use_bias:
            bias = self.conv.params["bias"]
            pooled += bias[:, None] if self.filters_first else bias
        mask = (route, pooled > 0) if self._training else None
        return np.maximum(pooled, 0, out=pooled), mask

    def _slot_gradients(self, dy, mask):
        """The gradient of the slot planes (in the workspace, shaped like them) from ``dy`` (N, Ho/2,
        Wo/2, F) and the ``mask`` of :meth:`_pool_activate`; returns it with the bias gradient ``(F,)``."""
        route, positive = mask
        rows = dy.reshape(-1, self.conv.filters)                      # (Q, F)
        if self.filters_first:
            d = np.multiply(rows.T, positive, order="C")              # through the ReLU, (F, Q)
            d_bias = d @ np.ones(d.shape[1], dtype=d.dtype)
        else:
            d = rows * positive
            d_bias = np.ones(len(d), dtype=d.dtype) @ d
        d_slots = self.conv.workspace.get("d_slots", (4, *d.shape), d.dtype)
        return route_to_quarters(d, route, d_slots), d_bias


class SlotMajorConvReluPool(ConvReluPool):
    """Several input channels: slot-major im2col rows, slot planes ``(Q, F)``; see the module docstring."""

    def _windows(self, xp):
        """View of the windows of ``xp`` (N, Hp, Wp, C) as ``(2, 2, N, Ho/2, Wo/2, kh, kw, C)``."""
        conv = self.conv
        windows = sliding_windows(xp, self.kernel_size, (1, 1), conv.out_spatial)
        split = windows.reshape(len(xp), self.pooled_shape[0], 2, self.pooled_shape[1], 2,
                                *windows.shape[3:])           # splitting axes: still a view
        return split.transpose(2, 4, 0, 1, 3, 5, 6, 7)

    def scratch_values(self, batch):
        """Size of the window matrix for ``batch`` samples: ``4Q × kh·kw·C``."""
        rows = 4 * batch * self.pooled_shape[0] * self.pooled_shape[1]
        return rows * self.conv.params["kernel"][..., 0].size

    def _forward(self, x):
        conv = self.conv
        kernel = conv.params["kernel"]
        filters = kernel.shape[-1]
        batch, quarter = len(x), len(x) * self.pooled_shape[0] * self.pooled_shape[1]
        windows = self._windows(pad_spatial(x, conv.pads, workspace=conv.workspace))
        cols = conv.workspace.get("fused_cols", (4 * quarter, kernel[..., 0].size), x.dtype)
        np.copyto(cols.reshape(windows.shape), windows)
        slots = (cols @ kernel.reshape(-1, filters)).reshape(4, quarter, filters)
        y, mask = self._pool_activate(slots)
        self._cache = (x.shape, cols, mask)
        return y.reshape(batch, *self.pooled_shape, filters)

    def _backward(self, dy):
        conv = self.conv
        x_shape, cols, mask = self._cache
        kernel = conv.params["kernel"]
        filters = kernel.shape[-1]
        d_slots, d_bias = self._slot_gradients(dy, mask)              # (4, Q, F)
        conv.store_gradients((cols.T @ d_slots.reshape(-1, filters)).reshape(kernel.shape), d_bias)
        if not conv.input_grad_needed:
            return None
        # Back to channels-last row order, (N, Ho, Wo, F), for the input gradient.
        dz = np.ascontiguousarray(
            d_slots.reshape(2, 2, x_shape[0], *self.pooled_shape, filters).transpose(2, 3, 0, 4, 1, 5)
        ).reshape(-1, filters)
        return conv_input_gradient(dz, kernel, x_shape, conv.stride, conv.pads, conv.out_spatial)


class PatchConvReluPool(ConvReluPool):
    """One input channel: a ``(kh+1) × (kw+1)`` patch per pool window; see the module docstring.

    With ``P = (kh+1)(kw+1)`` patch cells and ``Q`` pool windows, the patch matrix is ``(P, Q)`` (each
    row one contiguous copy), the expanded kernel ``(4F, P)`` and the slot planes ``(4, F, Q)``.
    """

    filters_first = True

    def _patches(self, xp):
        """View of ``xp`` (N, Hp, Wp, 1) as ``(kh+1, kw+1, N, Ho/2, Wo/2)``: patch cell, then pool window."""
        size = (self.kernel_size[0] + 1, self.kernel_size[1] + 1)
        patches = sliding_windows(xp, size, (2, 2), self.pooled_shape)    # (N, Hq, Wq, kh+1, kw+1, 1)
        return patches[..., 0].transpose(3, 4, 0, 1, 2)

    def _expanded_kernel(self):
        """The kernel as four shifted copies, ``(4F, (kh+1)(kw+1))``: the rows of slot ``(a, b)`` hold it at
        offset ``(a, b)`` of the patch, zeros elsewhere."""
        kh, kw = self.kernel_size
        kernel = self.conv.params["kernel"]
        filters = kernel.shape[-1]
        # Allocated (and zeroed) once: every call rewrites the same blocks, so the zeros stay.
        expanded = self.conv.workspace.get("patch_kernel", (2, 2, filters, kh + 1, kw + 1),
                                           kernel.dtype, fill=0)
        by_filter = kernel[:, :, 0, :].transpose(2, 0, 1)             # (F, kh, kw)
        for a in (0, 1):
            for b in (0, 1):
                expanded[a, b, :, a:a + kh, b:b + kw] = by_filter
        return expanded.reshape(4 * filters, -1)

    def scratch_values(self, batch):
        """Size of the patch matrix for ``batch`` samples: ``(kh+1)(kw+1) × Q``."""
        kh, kw = self.kernel_size
        return (kh + 1) * (kw + 1) * batch * self.pooled_shape[0] * self.pooled_shape[1]

    def _forward(self, x):
        conv = self.conv
        filters = conv.filters
        patches = self._patches(pad_spatial(x, conv.pads, workspace=conv.workspace))
        cols_t = conv.workspace.get("patch_cols_t", patches.shape, x.dtype)
        np.copyto(cols_t, patches)
        cols_t = cols_t.reshape(patches.shape[0] * patches.shape[1], -1)          # (P, Q)
        expanded = self._expanded_kernel()                                           # (4F, P)
        slots = conv.workspace.get("patch_slots", (4, filters, cols_t.shape[1]), x.dtype)
        np.matmul(expanded, cols_t, out=slots.reshape(4 * filters, -1))               # (4, F, Q)
        pooled, mask = self._pool_activate(slots)                                   # (F, Q)
        self._cache = (x.shape, cols_t, expanded, mask)
        return np.ascontiguousarray(pooled.T).reshape(len(x), *self.pooled_shape, filters)

    def _backward(self, dy):
        conv = self.conv
        x_shape, cols_t, expanded, mask = self._cache
        kh, kw = self.kernel_size
        filters = conv.filters
        d_slots, d_bias = self._slot_gradients(dy, mask)
        d_slots = d_slots.reshape(4 * filters, -1)                                  # (4F, Q)
        # The same product either way round; OpenBLAS was measured faster with the longer side first
        # (0.37 against 0.63 ms for 32 filters and 3x3 kernels, a batch of 32).
        if 4 * filters >= cols_t.shape[0]:
            d_expanded = d_slots @ cols_t.T
        else:
            d_expanded = (cols_t @ d_slots.T).T
        d_expanded = d_expanded.reshape(2, 2, filters, kh + 1, kw + 1)
        # Each slot saw the kernel at its own shift: fold the four shifted copies back onto the kernel.
        d_kernel = sum(d_expanded[a, b, :, a:a + kh, b:b + kw] for a in (0, 1) for b in (0, 1))
        conv.store_gradients(np.ascontiguousarray(d_kernel.transpose(1, 2, 0))[:, :, None, :], d_bias)
        if not conv.input_grad_needed:
            return None
        # The patches are windows of size (kh+1, kw+1) at stride 2: col2im sums their gradients back.
        d_patches = (expanded.T @ d_slots).T                                        # (Q, P)
        return col2im(d_patches, x_shape, (kh + 1, kw + 1), (2, 2), conv.pads, self.pooled_shape)


class WinogradConvReluPool(SlotMajorConvReluPool):
    """3×3 kernels, many channels: Winograd's F(2×2, 3×3), whose 2×2 output blocks are the pool
    windows; see :mod:`modularcnn.kernels.winograd`. With ``T`` = ``Q`` tiles, the transformed input is
    ``(16, T, C)``, the transformed kernel ``(16, C, F)`` and the products ``(16, T, F)``.

    The transforms are repaid by the backward pass, whose two products shrink too: inference (no
    backward) runs the slot-major layout, which was faster for it (one image: 0.21 against 0.29 ms).
    """

    #: With fewer input channels the products are too narrow to repay the transforms. Forward and
    #: backward of a 14×14 batch of 32 against the slot-major layout: 4 channels (32 filters) 1.36
    #: against 1.34 ms, 6 channels (16 filters) 1.08 against 1.18 ms, 32 channels (64 filters) 6.8
    #: against 9.7 ms.
    MIN_CHANNELS = 6
    #: A batch goes through in chunks of samples whose transformed input and products take about this
    #: many bytes, so that each product is transformed while it is still in the core's cache (L2).
    #: Measured for the Keras example's second layer, batch 32, forward and backward: 8.9 ms in one
    #: go, 6.4 ms in chunks of 8 samples (2.4 MB), 6.7 ms in chunks of 4.
    CHUNK_BYTES = 5 * 2**19

    def _chunks(self, x):
        """Slices of samples of ``x`` (N, H, W, C) of nearly equal sizes, about ``CHUNK_BYTES`` each."""
        tiles = self.pooled_shape[0] * self.pooled_shape[1]
        per_sample = 16 * tiles * (x.shape[-1] + self.conv.filters) * x.itemsize
        count = -(-len(x) * per_sample // self.CHUNK_BYTES)
        bounds = [len(x) * k // count for k in range(count + 1)]
        return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]

    def _forward(self, x):
        if not self._training:
            return super()._forward(x)
        conv, workspace = self.conv, self.conv.workspace
        tiles = self.pooled_shape[0] * self.pooled_shape[1]
        split = winograd.split_columns(x, conv.pads, workspace.get(
            "winograd_split", self._split_shape(x.shape), x.dtype, fill=0))     # zero border
        kernel = winograd.kernel_transform(conv.params["kernel"])                 # (16, C, F)
        y = np.empty((len(x) * tiles, conv.filters), x.dtype)
        chunks = []
        for k, part in enumerate(self._chunks(x)):
            rows = slice(part.start * tiles, part.stop * tiles)
            # Kept for the backward pass: one array per chunk.
            transformed = workspace.get(f"winograd_input{k}", (16, rows.stop - rows.start,
                                                               x.shape[-1]), x.dtype)
            winograd.input_transform(split[part], self.pooled_shape, transformed, workspace)
            products = workspace.get("winograd_products", (16, len(transformed[0]), conv.filters),
                                     x.dtype)
            np.matmul(transformed, kernel, out=products)
            y[rows], mask = self._pool_activate(winograd.output_transform(products, workspace))
            chunks.append((part, rows, transformed, mask))
        self._cache = (x.shape, kernel, chunks)
        return y.reshape(len(x), *self.pooled_shape, conv.filters)

    def _split_shape(self, x_shape):
        """Shape of the padded input with its even and odd columns apart: ``(N, Hp, 2, Wp/2, C)``."""
        _, height, width, channels = padded_shape(x_shape, self.conv.pads)
        return (x_shape[0], height, 2, width // 2, channels)

    def _backward(self, dy):
        conv, workspace = self.conv, self.conv.workspace
        x_shape, kernel, chunks = self._cache
        dy = dy.reshape(-1, conv.filters)
        d_kernel = np.zeros_like(kernel)                                          # (16, C, F)
        d_bias = np.zeros(conv.filters, dy.dtype)
        d_split = None
        if conv.input_grad_needed:
            d_split = workspace.get("winograd_d_split", self._split_shape(x_shape), dy.dtype)
        for part, rows, transformed, mask in chunks:
            d_slots, d_chunk_bias = self._slot_gradients(dy[rows], mask)
            d_bias += d_chunk_bias
            d_products = winograd.output_transform_adjoint(d_slots, workspace)    # (16, q, F)
            d_kernel += np.matmul(transformed.transpose(0, 2, 1), d_products)
            if d_split is not None:
                d_transformed = workspace.get("winograd_d_input", transformed.shape,
                                              transformed.dtype)
                np.matmul(d_products, kernel.transpose(0, 2, 1), out=d_transformed)
                winograd.input_transform_adjoint(d_transformed, d_split[part].shape,
                                                 self.pooled_shape, d_split[part], workspace)
        conv.store_gradients(winograd.kernel_transform_adjoint(d_kernel), d_bias)
        if d_split is None:
            return None
        return winograd.merge_columns(d_split, conv.pads, np.empty(x_shape, dy.dtype))


def execution_plan(layers, fuse=True):
    """The steps a network runs: each layer alone, or a fusable conv + pool pair as one step."""
    steps, i = [], 0
    while i < len(layers):
        if fuse and i + 1 < len(layers) and can_fuse(layers[i], layers[i + 1]):
            steps.append(ConvReluPool.for_layers(layers[i], layers[i + 1]))
            i += 2
        else:
            steps.append(layers[i])
            i += 1
    return steps


def step_layers(step):
    """The layers a step runs (one, or two for a fused pair)."""
    return step.layers if isinstance(step, ConvReluPool) else (step,)
