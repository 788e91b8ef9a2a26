"""A 2-D convolution, ReLU and 2×2 max pool in one pass: ``conv_relu_pool_forward`` / ``_backward``.

Pure functions of arrays, beside the reference kernels of :mod:`~modularcnn.kernels.conv` and
:mod:`~modularcnn.kernels.pooling`, with the same results: the fused steps of
:mod:`modularcnn.fusion` call them for a ``Convolutional`` (stride 1, no dilation, one group, zero
padding) whose output goes through a plain ReLU into a 2×2, stride-2 ``MaxPooling``. Which layout
runs is chosen by the planner (:func:`modularcnn.execution.select_step`), never here.

Every 2×2 pool window covers four convolution outputs, its four *slots* ``(a, b)`` (top-left,
top-right, bottom-left, bottom-right). Each layout computes the four slots of every pool window as
four contiguous planes, so that pooling is three element-wise maxima of contiguous arrays. Bias and
ReLU are applied *after* the pool, on a quarter of the values; both commute with the maximum
(``max(z) + b = max(z + b)`` and ``relu(max(z)) = max(relu(z))``), so the result is exactly the same.
Ties in the pool go to the first slot in row-major order, as in the unfused layers.

Shapes: input ``x`` ``(N, H, W, C)``, kernel ``(kh, kw, C, F)``, bias ``(F,)`` or None, ``pads`` as
convolutions give them (``((top, bottom), (left, right))``); the convolution's output ``(Ho, Wo)``
must be even, and the result is ``(N, Ho/2, Wo/2, F)``. ``Q = N·Ho/2·Wo/2`` is the number of pool
windows. The layouts (:data:`LAYOUTS`):

- ``"slot_major"``: im2col rows ordered by slot first — row ``(a, b, n, i, j)`` holds the window of
  output pixel ``(2i + a, 2j + b)`` of sample ``n`` — so the product with the kernel,
  ``(4Q, K) @ (K, F)``, is four ``(Q, F)`` planes, already channels-last.
- ``"patch"`` (one input channel): a window row would be ``kw`` single values, each copied on its own.
  Instead each pool window reads one ``(kh+1) × (kw+1)`` *patch* (the union of its four windows, at
  stride 2), a quarter of the copying; the kernel is expanded to four shifted copies padded with zeros,
  ``(4F, (kh+1)(kw+1))``, and one wide product gives the ``(4, F, Q)`` slot planes.
- ``"winograd"`` (3×3 kernels): Winograd's F(2×2, 3×3) (:mod:`~modularcnn.kernels.winograd`)
  computes outputs in 2×2 blocks, which are exactly the pool windows; its four output planes are the
  four slots, and the products do 16/36 of the arithmetic. A batch goes in chunks of samples of about
  ``chunk_bytes`` (transformed input and products), so that each product is transformed while it is
  still in the core's cache.

``conv_relu_pool_forward(..., training=True)`` returns a cache for the backward pass; in inference it
keeps nothing (no pool routes or ReLU masks) and returns None for it.
"""

import numpy as np

from . import winograd
from .conv import col2im, conv_input_gradient, sliding_windows
from .pooling import max_of_quarters, route_to_quarters
from .windows import pad_spatial
from .workspace import scratch, zeros

#: The ways :func:`conv_relu_pool_forward` can lay out the computation (see the module docstring).
LAYOUTS = ("slot_major", "patch", "winograd")
#: Winograd's chunks of samples take about this many bytes. Measured for the Keras example's second
#: layer, batch 32, forward and backward: 8.9 ms in one go, 6.4 ms in chunks of 8 samples (2.4 MB),
#: 6.7 ms in chunks of 4.
WINOGRAD_CHUNK_BYTES = 5 * 2**19


def pooled_shape(x_shape, kernel_shape, pads):
    """``(Ho/2, Wo/2)`` for an input ``(N, H, W, C)`` and kernel ``(kh, kw, C, F)``; ValueError when
    the convolution's output is not even (the pool would drop a row or column)."""
    out = tuple(n + before + after - k + 1
                for n, (before, after), k in zip(x_shape[1:3], pads, kernel_shape[:2]))
    if any(n < 2 or n % 2 for n in out):
        raise ValueError(f"conv_relu_pool: the convolution's output {out} must be even and at least 2 "
                         "along both axes for a fused 2x2 pool")
    return out[0] // 2, out[1] // 2


def scratch_values(layout, batch, pooled, kernel_shape):
    """Values of the largest scratch matrix of ``layout`` for ``batch`` samples (to bound memory).

    ``"patch"``: the patch matrix ``(kh+1)(kw+1) × Q``; otherwise the slot-major window matrix
    ``4Q × kh·kw·C`` (Winograd's transformed input is smaller).
    """
    kh, kw, channels, _ = kernel_shape
    windows = batch * pooled[0] * pooled[1]
    if layout == "patch":
        return (kh + 1) * (kw + 1) * windows
    return 4 * windows * kh * kw * channels


def winograd_chunks(x_shape, pooled, filters, itemsize, chunk_bytes=WINOGRAD_CHUNK_BYTES):
    """Slices of the ``x_shape[0]`` samples of nearly equal sizes, about ``chunk_bytes`` each."""
    batch, channels = x_shape[0], x_shape[-1]
    per_sample = 16 * pooled[0] * pooled[1] * (channels + filters) * itemsize
    count = max(1, -(-batch * per_sample // chunk_bytes))
    bounds = [batch * k // count for k in range(count + 1)]
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


# -- what every layout shares: pool, bias and ReLU, and their backward ----------------------------

def _pool_activate(slots, bias, filters_first, training, activation=None):
    """Pool the slot planes ``slots`` (4, Q, F) or (4, F, Q) (overwritten), add ``bias``, apply the
    activation: a plain ReLU when ``activation`` is None, else ``activation.forward`` (any
    non-decreasing element-wise function commutes with the maximum).

    Returns ``(y, mask)``: the output ``(Q, F)`` or ``(F, Q)`` and what the backward pass needs of it
    (None in inference).
    """
    pooled, route = max_of_quarters(slots, route=training, overwrite=True)
    if bias is not None:
        pooled += bias[:, None] if filters_first else bias
    if activation is not None:
        a = activation.forward(pooled)
        return a, ((route, (activation, pooled, a)) if training else None)
    mask = (route, pooled > 0) if training else None
    return np.maximum(pooled, 0, out=pooled), mask


def _slot_gradients(dy, mask, filters, filters_first, workspace):
    """The gradient of the slot planes (shaped like them) from ``dy`` (N, Ho/2, Wo/2, F) and the
    ``mask`` of :func:`_pool_activate`; returns it with the bias gradient ``(F,)``."""
    route, through = mask
    rows = dy.reshape(-1, filters)                                    # (Q, F)
    if filters_first:
        rows = rows.T                                                 # (F, Q)
    if isinstance(through, tuple):                                    # another activation
        activation, z, a = through
        d = np.ascontiguousarray(activation.backward(rows, z, a))
    else:                                                             # through the ReLU
        d = np.multiply(rows, through, order="C")
    if filters_first:
        d_bias = d @ np.ones(d.shape[1], dtype=d.dtype)
    else:
        d_bias = np.ones(len(d), dtype=d.dtype) @ d
    d_slots = scratch(workspace, "d_slots", (4, *d.shape), d.dtype)
    return route_to_quarters(d, route, d_slots), d_bias


# -- slot-major ----------------------------------------------------------------------------------

def _slot_major_forward(x, kernel, bias, pads, pooled, training, workspace, activation=None):
    batch, filters = len(x), kernel.shape[-1]
    quarter = batch * pooled[0] * pooled[1]
    xp = pad_spatial(x, pads, workspace=workspace)
    windows = sliding_windows(xp, kernel.shape[:2], (1, 1), (2 * pooled[0], 2 * pooled[1]))
    # Splitting the output axes into (pool window, slot) is still a view; slots go first.
    windows = windows.reshape(batch, pooled[0], 2, pooled[1], 2, *windows.shape[3:])
    windows = windows.transpose(2, 4, 0, 1, 3, 5, 6, 7)
    cols = scratch(workspace, "fused_cols", (4 * quarter, kernel[..., 0].size), x.dtype)
    np.copyto(cols.reshape(windows.shape), windows)
    slots = (cols @ kernel.reshape(-1, filters)).reshape(4, quarter, filters)
    y, mask = _pool_activate(slots, bias, False, training, activation)
    cache = {"layout": "slot_major", "x_shape": x.shape, "pads": pads, "pooled": pooled,
             "cols": cols, "mask": mask} if training else None
    return y.reshape(batch, *pooled, filters), cache


def _slot_major_backward(dy, cache, kernel, input_grad_needed, workspace):
    x_shape, pooled, filters = cache["x_shape"], cache["pooled"], kernel.shape[-1]
    d_slots, d_bias = _slot_gradients(dy, cache["mask"], filters, False, workspace)   # (4, Q, F)
    d_kernel = (cache["cols"].T @ d_slots.reshape(-1, filters)).reshape(kernel.shape)
    if not input_grad_needed:
        return None, d_kernel, d_bias
    # Back to channels-last row order, (N, Ho, Wo, F), for the input gradient.
    dz = np.ascontiguousarray(
        d_slots.reshape(2, 2, x_shape[0], *pooled, filters).transpose(2, 3, 0, 4, 1, 5)
    ).reshape(-1, filters)
    dx = conv_input_gradient(dz, kernel, x_shape, (1, 1), cache["pads"],
                             (2 * pooled[0], 2 * pooled[1]))
    return dx, d_kernel, d_bias


# -- patches (one input channel) -----------------------------------------------------------------

def _expanded_kernel(kernel, workspace):
    """The kernel as four shifted copies, ``(4F, (kh+1)(kw+1))``: the rows of slot ``(a, b)`` hold it
    at offset ``(a, b)`` of the patch, zeros elsewhere."""
    kh, kw, _, filters = kernel.shape
    # Kept (and zeroed) once in a workspace: every call rewrites the same blocks, so the zeros stay.
    expanded = zeros(workspace, "patch_kernel", (2, 2, filters, kh + 1, kw + 1), kernel.dtype)
    by_filter = kernel[:, :, 0, :].transpose(2, 0, 1)                 # (F, kh, kw)
    for a in (0, 1):
        for b in (0, 1):
            expanded[a, b, :, a:a + kh, b:b + kw] = by_filter
    return expanded.reshape(4 * filters, -1)


def _patch_forward(x, kernel, bias, pads, pooled, training, workspace, activation=None):
    kh, kw, _, filters = kernel.shape
    xp = pad_spatial(x, pads, workspace=workspace)
    patches = sliding_windows(xp, (kh + 1, kw + 1), (2, 2), pooled)   # (N, Hq, Wq, kh+1, kw+1, 1)
    patches = patches[..., 0].transpose(3, 4, 0, 1, 2)                # patch cell, then pool window
    cols_t = scratch(workspace, "patch_cols_t", patches.shape, x.dtype)
    np.copyto(cols_t, patches)
    cols_t = cols_t.reshape(patches.shape[0] * patches.shape[1], -1)  # (P, Q)
    expanded = _expanded_kernel(kernel, workspace)                    # (4F, P)
    slots = scratch(workspace, "patch_slots", (4, filters, cols_t.shape[1]), x.dtype)
    np.matmul(expanded, cols_t, out=slots.reshape(4 * filters, -1))   # (4, F, Q)
    pooled_values, mask = _pool_activate(slots, bias, True, training, activation)  # (F, Q)
    cache = {"layout": "patch", "x_shape": x.shape, "pads": pads, "pooled": pooled,
             "cols_t": cols_t, "expanded": expanded, "mask": mask} if training else None
    return np.ascontiguousarray(pooled_values.T).reshape(len(x), *pooled, filters), cache


def _patch_backward(dy, cache, kernel, input_grad_needed, workspace):
    kh, kw, _, filters = kernel.shape
    cols_t, expanded = cache["cols_t"], cache["expanded"]
    d_slots, d_bias = _slot_gradients(dy, cache["mask"], filters, True, workspace)
    d_slots = d_slots.reshape(4 * filters, -1)                        # (4F, Q)
    # The same product either way round; OpenBLAS was measured faster with the longer side first
    # (0.37 against 0.63 ms for 32 filters and 3x3 kernels, a batch of 32).
    if 4 * filters >= cols_t.shape[0]:
        d_expanded = d_slots @ cols_t.T
    else:
        d_expanded = (cols_t @ d_slots.T).T
    d_expanded = d_expanded.reshape(2, 2, filters, kh + 1, kw + 1)
    # Each slot saw the kernel at its own shift: fold the four shifted copies back onto the kernel.
    d_kernel = sum(d_expanded[a, b, :, a:a + kh, b:b + kw] for a in (0, 1) for b in (0, 1))
    d_kernel = np.ascontiguousarray(d_kernel.transpose(1, 2, 0))[:, :, None, :]
    if not input_grad_needed:
        return None, d_kernel, d_bias
    # The patches are windows of size (kh+1, kw+1) at stride 2: col2im sums their gradients back.
    d_patches = (expanded.T @ d_slots).T                              # (Q, P)
    dx = col2im(d_patches, cache["x_shape"], (kh + 1, kw + 1), (2, 2), cache["pads"], cache["pooled"])
    return dx, d_kernel, d_bias


# -- Winograd F(2x2, 3x3) ------------------------------------------------------------------------

def _winograd_forward(x, kernel, bias, pads, pooled, training, workspace, chunk_bytes,
                      activation=None):
    filters = kernel.shape[-1]
    tiles = pooled[0] * pooled[1]
    split = winograd.split_columns(x, pads, zeros(workspace, "winograd_split",
                                                    winograd.split_shape(x.shape, pads), x.dtype))
    transformed_kernel = winograd.kernel_transform(kernel)                 # (16, C, F)
    y = np.empty((len(x) * tiles, filters), x.dtype)
    chunks = []
    for k, part in enumerate(winograd_chunks(x.shape, pooled, filters, x.itemsize, chunk_bytes)):
        rows = slice(part.start * tiles, part.stop * tiles)
        # Kept for the backward pass: one array per chunk.
        transformed = scratch(workspace, f"winograd_input{k}",
                              (16, rows.stop - rows.start, x.shape[-1]), x.dtype)
        winograd.input_transform(split[part], pooled, transformed, workspace)
        products = scratch(workspace, "winograd_products", (16, len(transformed[0]), filters), x.dtype)
        np.matmul(transformed, transformed_kernel, out=products)
        y[rows], mask = _pool_activate(winograd.output_transform(products, workspace), bias, False,
                                       training, activation)
        chunks.append((part, rows, transformed, mask))
    cache = {"layout": "winograd", "x_shape": x.shape, "pads": pads, "pooled": pooled,
             "transformed_kernel": transformed_kernel, "chunks": chunks} if training else None
    return y.reshape(len(x), *pooled, filters), cache


def _winograd_backward(dy, cache, kernel, input_grad_needed, workspace):
    x_shape, pads, pooled = cache["x_shape"], cache["pads"], cache["pooled"]
    transformed_kernel, filters = cache["transformed_kernel"], kernel.shape[-1]
    dy = dy.reshape(-1, filters)
    d_transformed_kernel = np.zeros_like(transformed_kernel)                 # (16, C, F)
    d_bias = np.zeros(filters, dy.dtype)
    d_split = None
    if input_grad_needed:
        d_split = scratch(workspace, "winograd_d_split", winograd.split_shape(x_shape, pads), dy.dtype)
    for part, rows, transformed, mask in cache["chunks"]:
        d_slots, d_chunk_bias = _slot_gradients(dy[rows], mask, filters, False, workspace)
        d_bias += d_chunk_bias
        d_products = winograd.output_transform_adjoint(d_slots, workspace)  # (16, q, F)
        d_transformed_kernel += np.matmul(transformed.transpose(0, 2, 1), d_products)
        if d_split is not None:
            d_transformed = scratch(workspace, "winograd_d_input", transformed.shape, transformed.dtype)
            np.matmul(d_products, transformed_kernel.transpose(0, 2, 1), out=d_transformed)
            winograd.input_transform_adjoint(d_transformed, d_split[part].shape, pooled,
                                             d_split[part], workspace)
    d_kernel = winograd.kernel_transform_adjoint(d_transformed_kernel)
    if d_split is None:
        return None, d_kernel, d_bias
    return winograd.merge_columns(d_split, pads, np.empty(x_shape, dy.dtype)), d_kernel, d_bias


# -- the two entry points ------------------------------------------------------------------------

def conv_relu_pool_forward(x, kernel, bias, pads, layout="slot_major", training=True, workspace=None,
                           chunk_bytes=WINOGRAD_CHUNK_BYTES, activation=None):
    """``maxpool2x2(relu(conv(x, kernel) + bias))`` for ``x`` (N, H, W, C): ``(N, Ho/2, Wo/2, F)``.

    ``activation`` (an object with ``forward(z)`` and ``backward(da, z, a)``, see
    :mod:`modularcnn.activations`) replaces the ReLU; it must be element-wise and non-decreasing
    (leaky ReLU, ELU, tanh, sigmoid), so that it commutes with the maximum and runs after the pool.

    Returns ``(y, cache)``; ``cache`` is what :func:`conv_relu_pool_backward` needs (None when not
    ``training``). ``y`` is a new array; scratch arrays (some referenced by the cache) live in
    ``workspace`` when one is given, so a second call reuses them.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"conv_relu_pool: layout must be one of {LAYOUTS}, got {layout!r}")
    if x.ndim != 4 or kernel.ndim != 4 or x.shape[-1] != kernel.shape[2]:
        raise ValueError(f"conv_relu_pool: expected x (N, H, W, C) and kernel (kh, kw, C, F), got "
                         f"{x.shape} and {kernel.shape}")
    if layout == "patch" and x.shape[-1] != 1:
        raise ValueError(f"conv_relu_pool: the patch layout takes one input channel, got {x.shape[-1]}")
    if layout == "winograd" and kernel.shape[:2] != (3, 3):
        raise ValueError(f"conv_relu_pool: the Winograd layout takes 3x3 kernels, got "
                         f"{kernel.shape[:2]}")
    pooled = pooled_shape(x.shape, kernel.shape, pads)
    if layout == "winograd":
        return _winograd_forward(x, kernel, bias, pads, pooled, training, workspace, chunk_bytes,
                                 activation)
    forward = _patch_forward if layout == "patch" else _slot_major_forward
    return forward(x, kernel, bias, pads, pooled, training, workspace, activation)


def conv_relu_pool_backward(dy, cache, kernel, input_grad_needed=True, workspace=None):
    """Gradients of :func:`conv_relu_pool_forward` from ``dy`` (N, Ho/2, Wo/2, F) and its ``cache``.

    Returns ``(dx, dkernel, dbias)`` with shapes ``(N, H, W, C)``, ``kernel.shape`` and ``(F,)``;
    ``dx`` is None when ``input_grad_needed`` is false. ``kernel`` is the one the forward pass used.
    """
    if cache is None:
        raise ValueError("conv_relu_pool_backward needs the cache of a forward pass with training=True")
    backward = {"slot_major": _slot_major_backward, "patch": _patch_backward,
                "winograd": _winograd_backward}[cache["layout"]]
    return backward(dy, cache, kernel, input_grad_needed, workspace)
