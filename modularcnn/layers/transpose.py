"""Transposed convolutions (learned upsampling): :class:`Conv2DTranspose` and its 1-D/3-D relatives."""

from ..kernels.transpose import conv_transpose_backward, conv_transpose_forward
from ..kernels.windows import same_padding
from .base import register_layer
from .convolutional import ConvolutionLayer


def transpose_output_length(size, kernel, stride, padding):
    """Output length of a transposed convolution along one axis, as Keras computes it.

    ``"valid"``: ``size * stride + max(kernel - stride, 0)`` (that is ``(size - 1) * stride + kernel``
    when ``kernel >= stride``); ``"same"``: ``size * stride``; explicit ``(before, after)`` padding
    (PyTorch's convention): ``(size - 1) * stride + kernel - before - after``.
    """
    if padding == "valid":
        return size * stride + max(kernel - stride, 0)
    if padding == "same":
        return size * stride
    before, after = padding
    return (size - 1) * stride + kernel - before - after


@register_layer
class Conv2DTranspose(ConvolutionLayer):
    """2-D transposed convolution over channels-last images, with an optional fused activation.

    Input ``(N, H, W, C)``, kernel ``(kh, kw, filters, C)`` — Keras's layout, which is the kernel of the
    convolution this layer is the transpose of, so Keras weights load unchanged — bias ``(filters,)``,
    output ``(N, Ho, Wo, filters)`` with, per axis (Keras's formulas):

    - ``padding="valid"``: ``Ho = H * s + max(kh - s, 0)``, i.e. ``(H - 1) * s + kh`` when ``kh >= s``;
    - ``padding="same"``: ``Ho = H * s``;
    - explicit padding ``p`` (an int or ``(before, after)`` pairs, as in PyTorch):
      ``Ho = (H - 1) * s + kh - before - after``.

    Parameters
    ----------
    filters : int
        Number of output channels.
    filter_size : int or tuple, default 3
        Kernel size; Keras's name ``kernel_size`` is accepted too.
    stride : int or tuple, default 1
        Upsampling factor; Keras's name ``strides`` is accepted too.
    pad : "valid", "same", int or tuple, default "valid"
        See the formulas above; Keras's name ``padding`` is accepted too.
    activation : str, optional
        Applied to the output; see :mod:`modularcnn.activations`.
    use_bias, kernel_initializer, bias_initializer
        As in Keras; the default kernel initializer is Glorot uniform.
    """

    rank = 2
    default_pad = "valid"

    def __init__(self, filters, *args, **kwargs):
        super().__init__(filters, *args, **kwargs)
        for option in ("dilation_rate", "groups"):
            if getattr(self, option) not in ((1,) * self.rank, 1):
                raise ValueError(f"{type(self).__name__}: {option}={kwargs.get(option)!r} is not "
                                 "supported for transposed convolutions (only 1)")

    def _geometry(self, input_shape):
        """``(pads, out_spatial)``: the associated convolution's padding and this layer's output size."""
        spatial = self.spatial_shape(input_shape, self.rank)
        axis_pads = self.pad if isinstance(self.pad, tuple) else (self.pad,) * self.rank
        out = tuple(transpose_output_length(n, k, s, p)
                    for n, k, s, p in zip(spatial, self.filter_size, self.stride, axis_pads))
        if any(o < 1 for o in out):
            raise ValueError(f"{self.describe()}: padding {self.pad!r} leaves no output for input "
                             f"{tuple(input_shape)} (output spatial shape would be {out})")
        if self.pad == "valid":
            pads = ((0, 0),) * self.rank
        elif self.pad == "same":
            pads = tuple(same_padding(o, k, s) for o, k, s in zip(out, self.filter_size, self.stride))
        else:
            pads = self.pad
        return pads, out

    def kernel_shape(self, channels):
        return self.filter_size + (self.filters, channels)

    def forward(self, x, training=False):
        self.check_input(x)
        z = conv_transpose_forward(x, self.params["kernel"], self.params.get("bias"), self.stride,
                                   self.pads, self.out_spatial)
        self._x = x
        return self.activate(z)

    def backward_preactivation(self, dz):
        """Backward from ``dL/dz``, the gradient before the activation (used by fused losses)."""
        dx, dkernel, dbias = conv_transpose_backward(dz, self._x, self.params["kernel"], self.stride,
                                                     self.pads, self.input_grad_needed)
        self.store_gradients(dkernel, dbias)
        return dx


@register_layer
class Conv1DTranspose(Conv2DTranspose):
    """1-D transposed convolution over ``(N, L, C)`` sequences; kernel ``(k, filters, C)``."""

    rank = 1


@register_layer
class Conv3DTranspose(Conv2DTranspose):
    """3-D transposed convolution over ``(N, D, H, W, C)``; kernel ``(kd, kh, kw, filters, C)``."""

    rank = 3
