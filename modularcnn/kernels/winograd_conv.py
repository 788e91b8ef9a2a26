"""A lone stride-1 3×3 convolution by Winograd's F(2×2, 3×3): forward and both gradients.

The transforms of :mod:`~modularcnn.kernels.winograd` compute outputs in 2×2 blocks. Before a 2×2 max
pool those blocks are the pool windows (:mod:`~modularcnn.kernels.conv_pool`); here the blocks are laid
back into an ordinary ``(N, Ho, Wo, F)`` output, so that any stride-1 3×3 convolution with a zero border
can use them: one followed by batch normalisation, inside a residual block, or one of a stack of
``"same"`` convolutions.

The output need not be even. The tile grid covers ``th = ceil(Ho/2)`` by ``tw = ceil(Wo/2)`` blocks; the
input gets that many more zero rows and columns after its border (*grid pads*), the last block row or
column computes values past the output, and they are cropped. In the backward pass their gradient is
zero, so they contribute nothing to either gradient.

Shapes: input ``x`` ``(N, H, W, C)``, kernel ``(3, 3, C, F)``, bias ``(F,)`` or None, ``pads`` as
convolutions give them (``((top, bottom), (left, right))``); output ``z`` ``(N, Ho, Wo, F)`` with
``Ho = H + top + bottom - 2``. No activation: the layer applies its own to ``z``.

A batch goes in chunks of samples of about ``chunk_bytes`` (transformed input and products), as in the
fused pool step, so that each product is transformed while it is still in the core's cache.
"""

import numpy as np

from . import winograd
from .conv_pool import WINOGRAD_CHUNK_BYTES, winograd_chunks
from .workspace import scratch, zeros


def tile_grid(x_shape, pads):
    """``(out, tiles, grid_pads)`` for an input ``(N, H, W, C)`` and a 3×3 kernel.

    ``out`` is the convolution's output ``(Ho, Wo)``, ``tiles`` the blocks ``(th, tw)`` that cover it,
    and ``grid_pads`` the pads with the extra zero rows and columns after that the tiles read.
    ValueError when the kernel does not fit the padded input.
    """
    out = tuple(n + before + after - 2 for n, (before, after) in zip(x_shape[1:3], pads))
    if min(out) < 1:
        raise ValueError(f"winograd_conv: a 3x3 kernel does not fit the padded input {x_shape[1:3]} "
                         f"with pads {tuple(pads)} (output {out})")
    tiles = tuple(-(-n // 2) for n in out)
    grid_pads = tuple((before, after + 2 * t - n) for (before, after), t, n in zip(pads, tiles, out))
    return out, tiles, grid_pads


def _check(x, kernel):
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or x.shape[-1] != kernel.shape[2]:
        raise ValueError(f"winograd_conv: expected x (N, H, W, C) and kernel (3, 3, C, F), got "
                         f"{x.shape} and {kernel.shape}")


def winograd_conv_forward(x, kernel, bias, pads, workspace=None, chunk_bytes=WINOGRAD_CHUNK_BYTES):
    """``conv(x, kernel) + bias`` for ``x`` (N, H, W, C), stride 1, zero border: ``(N, Ho, Wo, F)``.

    Returns ``(z, cache)``: the output (a new array) and what :func:`winograd_conv_backward` needs (its
    transformed inputs live in ``workspace`` when one is given, so a second call reuses them).
    """
    _check(x, kernel)
    out, tiles, grid_pads = tile_grid(x.shape, pads)
    batch, channels, filters = len(x), x.shape[-1], kernel.shape[-1]
    (th, tw), per_sample = tiles, tiles[0] * tiles[1]
    split = winograd.split_columns(x, grid_pads, zeros(workspace, "winograd_conv_split",
                                                         winograd.split_shape(x.shape, grid_pads), x.dtype))
    transformed_kernel = winograd.kernel_transform(kernel)                    # (16, C, F)
    grid = np.empty((batch, th, 2, tw, 2, filters), x.dtype)                  # blocks in place
    chunks = []
    for k, part in enumerate(winograd_chunks(x.shape, tiles, filters, x.itemsize, chunk_bytes)):
        count = (part.stop - part.start) * per_sample
        transformed = scratch(workspace, f"winograd_conv_input{k}", (16, count, channels), x.dtype)
        winograd.input_transform(split[part], tiles, transformed, workspace)
        products = scratch(workspace, "winograd_conv_products", (16, count, filters), x.dtype)
        np.matmul(transformed, transformed_kernel, out=products)
        blocks = winograd.output_transform(products, workspace)               # (4, count, F)
        grid[part] = blocks.reshape(2, 2, -1, th, tw, filters).transpose(2, 3, 0, 4, 1, 5)
        chunks.append((part, transformed))
    z = grid.reshape(batch, 2 * th, 2 * tw, filters)
    if z.shape[1:3] != out:
        z = np.ascontiguousarray(z[:, :out[0], :out[1]])
    if bias is not None:
        z += bias
    cache = {"x_shape": x.shape, "grid_pads": grid_pads, "tiles": tiles, "out": out,
             "transformed_kernel": transformed_kernel, "chunks": chunks}
    return z, cache


def winograd_conv_backward(dz, cache, kernel, input_grad_needed=True, workspace=None):
    """Gradients of :func:`winograd_conv_forward` from ``dz`` (N, Ho, Wo, F) and its ``cache``.

    Returns ``(dx, dkernel, dbias)`` shaped ``(N, H, W, C)``, ``(3, 3, C, F)`` and ``(F,)``; ``dx`` is
    None when ``input_grad_needed`` is false. ``kernel`` is the one the forward pass used.
    """
    x_shape, grid_pads, (th, tw), out = cache["x_shape"], cache["grid_pads"], cache["tiles"], cache["out"]
    transformed_kernel, filters = cache["transformed_kernel"], kernel.shape[-1]
    if dz.shape != (x_shape[0], *out, filters):
        raise ValueError(f"winograd_conv_backward: expected dz of shape {(x_shape[0], *out, filters)}, "
                         f"got {dz.shape}")
    d_bias = np.ones(dz.size // filters, dz.dtype) @ dz.reshape(-1, filters)
    if out != (2 * th, 2 * tw):
        # The cropped values past the output have zero gradient: a zero border that stays zero.
        d_grid = zeros(workspace, "winograd_conv_d_grid", (x_shape[0], 2 * th, 2 * tw, filters),
                         dz.dtype)
        d_grid[:, :out[0], :out[1]] = dz
    else:
        d_grid = dz
    d_grid = d_grid.reshape(x_shape[0], th, 2, tw, 2, filters)
    d_transformed_kernel = np.zeros_like(transformed_kernel)                  # (16, C, F)
    d_split = None
    if input_grad_needed:
        d_split = scratch(workspace, "winograd_conv_d_split", winograd.split_shape(x_shape, grid_pads),
                          dz.dtype)
    for part, transformed in cache["chunks"]:
        d_blocks = scratch(workspace, "winograd_conv_d_blocks",
                           (2, 2, part.stop - part.start, th, tw, filters), dz.dtype)
        np.copyto(d_blocks, d_grid[part].transpose(2, 4, 0, 1, 3, 5))
        d_products = winograd.output_transform_adjoint(d_blocks.reshape(4, -1, filters), workspace)
        d_transformed_kernel += np.matmul(transformed.transpose(0, 2, 1), d_products)
        if d_split is not None:
            d_transformed = scratch(workspace, "winograd_conv_d_input", transformed.shape, dz.dtype)
            np.matmul(d_products, transformed_kernel.transpose(0, 2, 1), out=d_transformed)
            winograd.input_transform_adjoint(d_transformed, d_split[part].shape, (th, tw),
                                             d_split[part], workspace)
    d_kernel = winograd.kernel_transform_adjoint(d_transformed_kernel)
    if d_split is None:
        return None, d_kernel, d_bias
    return winograd.merge_columns(d_split, grid_pads, np.empty(x_shape, dz.dtype)), d_kernel, d_bias
