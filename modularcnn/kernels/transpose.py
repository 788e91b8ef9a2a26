"""Transposed convolution ("deconvolution") forward and backward, built from :mod:`.conv`'s im2col/col2im.

A transposed convolution is the adjoint of an ordinary convolution, which we call the *associated*
convolution: it maps the transposed layer's output ``y`` (N, *O, F) back to its input ``x`` (N, *S, C)
with the same kernel, stride and padding. Hence

- forward: ``y = col2im(x2d @ W^T)`` — the associated convolution's input gradient
  (:func:`.conv.conv_input_gradient`, which computes it offset by offset);
- backward: ``dx = im2col(dy) @ W`` — the associated convolution's forward pass.

Shapes, for ``r`` spatial axes:

- ``x``: ``(N, *S, C)``; kernel: ``(*K, F, C)`` (Keras's ``Conv2DTranspose`` layout: the associated
  convolution's kernel, whose input channels are our ``F`` outputs and whose outputs are our ``C``
  inputs); bias ``(F,)``; ``y``: ``(N, *O, F)``;
- the kernel is used as a ``(prod(K) * F, C)`` matrix without a copy.
"""

import numpy as np

from .conv import conv_input_gradient, im2col


def conv_transpose_forward(x, kernel, bias, stride, pads, out_shape):
    """Transposed convolution of ``x`` (N, *S, C) with ``kernel`` (*K, F, C), plus ``bias`` (F,) or None.

    ``out_shape`` is the output's spatial shape ``O``; the associated convolution (kernel ``K``,
    ``stride``, ``pads``) must map ``O`` to ``S``. Returns ``y`` (N, *O, F), C-contiguous.
    """
    filters, channels = kernel.shape[-2:]
    y_shape = (x.shape[0], *out_shape, filters)
    # The associated convolution's input gradient, with x as its output gradient: one stacked product
    # per kernel offset, each block added where that offset reaches (no (M, prod(K) * F) window matrix).
    y = conv_input_gradient(x.reshape(-1, channels), kernel, y_shape, stride, pads, x.shape[1:-1])
    y = np.ascontiguousarray(y)
    if bias is not None:
        y += bias
    return y


def conv_transpose_backward(dy, x, kernel, stride, pads, need_input_grad=True):
    """Gradients of :func:`conv_transpose_forward` given ``dy`` (N, *O, F) and the forward input ``x``.

    Returns ``(dx, dkernel, dbias)`` with shapes ``x.shape``, ``kernel.shape`` and ``(F,)``; ``dx`` is
    None when ``need_input_grad`` is false.
    """
    kernel_size = kernel.shape[:-2]
    channels = kernel.shape[-1]
    in_spatial = x.shape[1:-1]
    # The adjoint of col2im is im2col: one row per input position, holding its output window.
    cols = im2col(dy, kernel_size, stride, pads, in_spatial)
    x2d = x.reshape(-1, channels)
    kernel2 = kernel.reshape(-1, channels)
    dkernel = (cols.T @ x2d).reshape(kernel.shape)
    dbias = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
    dx = None
    if need_input_grad:
        dx = (cols @ kernel2).reshape(x.shape)
    return dx, dkernel, dbias
