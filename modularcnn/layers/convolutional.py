"""Convolution layers: :class:`Convolutional` (alias ``Conv2D``), and its 1-D and 3-D relatives."""

import math

import numpy as np

from .. import initializers, validation
from ..kernels.conv import conv_backward, conv_forward, im2col
from ..kernels.workspace import Workspace
from ..kernels.windows import dilated_size
from .base import ActivatedLayer, pick_alias, register_layer


class ConvolutionLayer(ActivatedLayer):
    """What plain and transposed convolutions share: their arguments (ours and Keras's names), checks
    and config. Subclasses set ``rank`` and ``default_pad`` and do the arithmetic."""

    rank = 2
    default_pad = 0
    weight_options = {"kernel": "kernel", "bias": "bias"}

    def __init__(self, filters, filter_size=None, stride=None, pad=None, input_shape=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 activation=None, name=None, trainable=True, kernel_size=None, strides=None,
                 padding=None, alpha=None, dilation_rate=1, groups=1, kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None):
        super().__init__(activation=activation, alpha=alpha, input_shape=input_shape, name=name,
                         trainable=trainable, activity_regularizer=activity_regularizer)
        self.set_weight_options({"kernel_regularizer": kernel_regularizer,
                                 "bias_regularizer": bias_regularizer,
                                 "kernel_constraint": kernel_constraint,
                                 "bias_constraint": bias_constraint})
        kind = type(self).__name__
        self.filters = validation.positive_int(filters, "filters", kind)
        self.filter_size = validation.normalize_tuple(
            pick_alias(kind, "filter_size", filter_size, "kernel_size", kernel_size, 3),
            self.rank, "filter_size", kind)
        self.stride = validation.normalize_tuple(
            pick_alias(kind, "stride", stride, "strides", strides, 1), self.rank, "stride", kind)
        self.pad = validation.normalize_padding(
            pick_alias(kind, "pad", pad, "padding", padding, self.default_pad), self.rank, kind)
        self.dilation_rate = validation.normalize_tuple(dilation_rate, self.rank, "dilation_rate", kind)
        self.groups = validation.positive_int(groups, "groups", kind)
        if self.filters % self.groups:
            raise ValueError(f"{kind}: groups={self.groups} must divide filters={self.filters}")
        self.use_bias = validation.boolean(use_bias, "use_bias", kind)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def check_groups(self, input_shape):
        """Raise ValueError unless ``groups`` divides the input's channels."""
        channels = input_shape[-1] if len(input_shape) else None
        if channels is not None and channels % self.groups:
            raise ValueError(f"{self.describe()}: groups={self.groups} must divide the input's "
                             f"{channels} channels (input shape {tuple(input_shape)})")

    def kernel_shape(self, channels):
        """The kernel's shape for ``channels`` input channels."""
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        _, out = self._geometry(input_shape)
        return out + (self.filters,)

    def build(self, input_shape):
        super().build(input_shape)
        self.pads, self.out_spatial = self._geometry(self.input_shape)
        self.add_param("kernel", self.kernel_shape(self.input_shape[-1]), self.kernel_initializer)
        if self.use_bias:
            self.add_param("bias", (self.filters,), self.bias_initializer)

    def store_gradients(self, dkernel, dbias):
        """Keep the kernel's and (with a bias) the bias's gradients in ``grads``."""
        self.grads["kernel"] = dkernel
        if self.use_bias:
            self.grads["bias"] = dbias

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "filter_size": list(self.filter_size),
            "stride": list(self.stride),
            "pad": self.pad if isinstance(self.pad, str) else [list(p) for p in self.pad],
            "dilation_rate": list(self.dilation_rate),
            "groups": self.groups,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
        }


def in_sample_slices(forward, x, sample_bytes, sample_shape, limit):
    """``forward(x)`` for an inference batch ``x`` (N, ...), a slice of samples at a time when the
    window matrix of the whole batch (``sample_bytes`` per sample) would exceed ``limit`` bytes.

    Returns ``(y, sliced)``: the output ``(N, *sample_shape)`` and whether it went in slices.
    """
    chunk = max(1, limit // sample_bytes)
    if len(x) <= chunk:
        return forward(x), False
    y = np.empty((len(x), *sample_shape), dtype=x.dtype)
    for start in range(0, len(x), chunk):
        y[start:start + chunk] = forward(x[start:start + chunk])
    return y, True


@register_layer
class Convolutional(ConvolutionLayer):
    """2-D convolution over channels-last images, with an optional fused activation.

    Input ``(N, H, W, C)``, kernel ``(kh, kw, C, filters)``, bias ``(filters,)``, output
    ``(N, Ho, Wo, filters)`` with ``Ho = floor((H + pad_top + pad_bottom - kh) / stride_h) + 1``.

    Parameters
    ----------
    filters : int
        Number of output channels.
    filter_size : int or tuple, default 3
        Kernel size ``kh`` (and ``kw``). Keras's name ``kernel_size`` is accepted too.
    stride : int or tuple, default 1
        Step between windows. Keras's name ``strides`` is accepted too.
    pad : int, tuple, "valid" or "same", default 0
        Zero padding: an int on every side, per-axis ints or ``(before, after)`` pairs, ``"valid"``
        (none) or ``"same"`` (output ``ceil(size / stride)``, the extra row after when the total is odd,
        as in Keras). Keras's name ``padding`` is accepted too.
    pad_value : float, default 0
        The value of the padded border (the seed library's option); the gradient is the same for
        any value, since the border is a constant.
    activation : str, optional
        Applied to the output (``"relu"``, …); see :mod:`modularcnn.activations`.
    dilation_rate : int or tuple, default 1
        Spacing between the kernel's taps (Keras's argument; PyTorch's ``dilation``): a window spans
        ``dilation_rate * (filter_size - 1) + 1`` cells, which is what output sizes and ``"same"``
        padding use. Any stride may go with it.
    groups : int, default 1
        Split input and output channels into this many groups, each convolved on its own (Keras's and
        PyTorch's ``groups``); it must divide both. The kernel is then ``(kh, kw, C / groups, filters)``.
    use_bias, kernel_initializer, bias_initializer
        As in Keras; the default kernel initializer is Glorot uniform.
    kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint
        As in Keras (:mod:`modularcnn.regularizers`, :mod:`modularcnn.constraints`); a constraint's
        default ``axis=0`` is the kernel's first axis: give ``axis=[0, 1, 2]`` for each filter's norm.
    """

    rank = 2
    #: In inference, batches whose window matrix would exceed this many bytes are convolved a slice of
    #: samples at a time. That bounds memory (predicting 10,000 images in batches of 1,000), and a
    #: slice whose windows stay in the core's cache (2 MiB here) is multiplied faster than one read
    #: back from memory: predict of 1,000 images, CPU time with a one-thread BLAS, 16 MiB -> 2 MiB:
    #: small ResNet 0.82 -> 0.47 s, Keras example CNN 0.19 -> 0.18 s, CIFAR net 0.41 -> 0.37 s,
    #: LeNet 38 -> 28 ms (the Conv1D net 47 -> 58 ms, the one that lost).
    INFERENCE_WINDOW_BYTES = 2 * 2**20

    def __init__(self, *args, pad_value=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.pad_value = validation.real(pad_value, "pad_value", type(self).__name__)

    def _geometry(self, input_shape):
        self.check_groups(input_shape)
        return self.window_geometry(input_shape, dilated_size(self.filter_size, self.dilation_rate),
                                    self.stride, self.pad)

    def kernel_shape(self, channels):
        return self.filter_size + (channels // self.groups, self.filters)

    def build(self, input_shape):
        super().build(input_shape)
        self.workspace = Workspace()

    def forward(self, x, training=False):
        self.check_input(x)
        kernel, bias = self.params["kernel"], self.params.get("bias")

        def convolve(part):
            return conv_forward(part, kernel, bias, self.stride, self.pads, self.out_spatial,
                                self.workspace, self.pad_value, self.dilation_rate, self.groups)

        if training:
            z, self._cols = convolve(x)
        else:
            window_bytes = (math.prod(self.out_spatial) * math.prod(self.filter_size) * x.shape[-1]
                            * x.itemsize)
            z, _ = in_sample_slices(lambda part: convolve(part)[0], x, window_bytes,
                                    self.output_shape, self.INFERENCE_WINDOW_BYTES)
            self._cols = None  # a backward pass after inference rebuilds the windows
        self._x = x
        return self.activate(z)

    def backward_preactivation(self, dz):
        """Backward from ``dL/dz``, the gradient before the activation (used by fused losses)."""
        cols = self._cols
        if cols is None:
            cols = im2col(self._x, self.filter_size, self.stride, self.pads, self.out_spatial,
                          pad_value=self.pad_value, dilation=self.dilation_rate)
        dx, dkernel, dbias = conv_backward(dz, cols, self.params["kernel"], self._x.shape,
                                           self.stride, self.pads, self.input_grad_needed,
                                           self.dilation_rate, self.groups)
        self.store_gradients(dkernel, dbias)
        return dx

    def get_config(self):
        return {**super().get_config(), "pad_value": self.pad_value}


@register_layer
class Conv2D(Convolutional):
    """Keras's name for :class:`Convolutional`: ``Conv2D(filters, kernel_size, strides, padding)``."""


@register_layer
class Conv1D(Convolutional):
    """1-D convolution over ``(N, L, C)`` sequences; kernel ``(k, C, filters)``."""

    rank = 1


@register_layer
class Conv3D(Convolutional):
    """3-D convolution over ``(N, D, H, W, C)`` volumes; kernel ``(kd, kh, kw, C, filters)``."""

    rank = 3
