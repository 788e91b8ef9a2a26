"""Depthwise and depthwise-separable convolutions: DepthwiseConv1D/2D, SeparableConv1D/2D.

A depthwise convolution convolves every input channel on its own with ``depth_multiplier`` filters:
it is the grouped convolution of :mod:`modularcnn.kernels.conv` with ``groups = C``, so it shares
its window copies and products (and their tests). Kernels are stored in Keras's layouts:

- ``depthwise_kernel``: ``(*K, C, depth_multiplier)``; output channel ``c * depth_multiplier + m`` is
  input channel ``c`` convolved with filter ``m`` — exactly the grouped kernel ``(*K, 1, C * M)``
  read in memory order, so it is passed to the grouped kernels as a reshaped view (no copy);
- ``pointwise_kernel`` (separable only): ``(*1, C * M, filters)``, a 1x1 convolution, i.e. a product
  over the channel axis;
- ``bias``: ``(C * M,)`` for depthwise, ``(filters,)`` for separable (after the pointwise step).
"""

import math

from .. import initializers, validation
from ..kernels.conv import conv_backward, conv_forward, im2col
from ..kernels.windows import dilated_size
from ..validation import normalize_padding, normalize_tuple
from ..kernels.workspace import Workspace
from .base import ActivatedLayer, register_layer
from .convolutional import Convolutional, in_sample_slices
from .reshaping import check_channels_last


class _Depthwise(ActivatedLayer):
    """The depthwise step and the arguments Keras's depthwise and separable layers share."""

    rank = 2
    INFERENCE_WINDOW_BYTES = Convolutional.INFERENCE_WINDOW_BYTES
    weight_options = {"depthwise_kernel": "depthwise", "bias": "bias"}

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros", alpha=None,
                 depthwise_regularizer=None, bias_regularizer=None, depthwise_constraint=None,
                 bias_constraint=None, pointwise_regularizer=None, pointwise_constraint=None,
                 **kwargs):
        super().__init__(activation=activation, alpha=alpha, **kwargs)
        self.set_weight_options({"depthwise_regularizer": depthwise_regularizer,
                                 "bias_regularizer": bias_regularizer,
                                 "depthwise_constraint": depthwise_constraint,
                                 "bias_constraint": bias_constraint,
                                 "pointwise_regularizer": pointwise_regularizer,
                                 "pointwise_constraint": pointwise_constraint})
        kind = type(self).__name__
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", kind)
        self.strides = normalize_tuple(strides, self.rank, "strides", kind)
        self.padding = normalize_padding(padding, self.rank, kind)
        self.depth_multiplier = validation.positive_int(depth_multiplier, "depth_multiplier", kind)
        self.data_format = check_channels_last(data_format, kind)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", kind)
        self.use_bias = validation.boolean(use_bias, "use_bias", kind)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def _geometry(self, input_shape):
        return self.window_geometry(input_shape, dilated_size(self.kernel_size, self.dilation_rate),
                                    self.strides, self.padding)

    def out_channels(self, input_shape):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        _, out = self._geometry(input_shape)
        return out + (self.out_channels(input_shape),)

    def build(self, input_shape):
        super().build(input_shape)
        self.pads, self.out_spatial = self._geometry(self.input_shape)
        self.channels = self.input_shape[-1]
        self.add_param("depthwise_kernel", self.kernel_size + (self.channels, self.depth_multiplier),
                       self.depthwise_initializer)
        self.workspace = Workspace()

    def grouped_kernel(self):
        """The depthwise kernel as the grouped kernel ``(*K, 1, C * M)`` (a view)."""
        return self.params["depthwise_kernel"].reshape(self.kernel_size + (1, -1))

    def depthwise_forward(self, x, bias, training):
        """The depthwise convolution of ``x`` (plus ``bias`` or None): ``(N, *O, C * M)``."""
        kernel = self.grouped_kernel()

        def convolve(part):
            return conv_forward(part, kernel, bias, self.strides, self.pads, self.out_spatial,
                                self.workspace, 0.0, self.dilation_rate, self.channels)

        self._x = x
        if training:
            y, self._cols = convolve(x)
            return y
        window_bytes = math.prod(self.out_spatial) * math.prod(self.kernel_size) * x.shape[-1] * x.itemsize
        y, _ = in_sample_slices(lambda part: convolve(part)[0], x, window_bytes,
                                self.out_spatial + (self.channels * self.depth_multiplier,),
                                self.INFERENCE_WINDOW_BYTES)
        self._cols = None  # a backward pass after inference rebuilds the windows
        return y

    def depthwise_backward(self, dd):
        """From ``dL/d(depthwise output)``: ``(dx, d depthwise_kernel, d bias)``."""
        cols = self._cols
        if cols is None:
            cols = im2col(self._x, self.kernel_size, self.strides, self.pads, self.out_spatial,
                          dilation=self.dilation_rate)
        kernel = self.grouped_kernel()
        dx, dkernel, dbias = conv_backward(dd, cols, kernel, self._x.shape, self.strides, self.pads,
                                           self.input_grad_needed, self.dilation_rate, self.channels)
        self.grads["depthwise_kernel"] = dkernel.reshape(self.params["depthwise_kernel"].shape)
        return dx, dbias

    def get_config(self):
        return {**super().get_config(), "kernel_size": list(self.kernel_size),
                "strides": list(self.strides),
                "padding": self.padding if isinstance(self.padding, str)
                else [list(p) for p in self.padding],
                "depth_multiplier": self.depth_multiplier,
                "dilation_rate": list(self.dilation_rate), "use_bias": self.use_bias,
                "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


@register_layer
class DepthwiseConv2D(_Depthwise):
    """Keras's ``DepthwiseConv2D``: each channel of ``(N, H, W, C)`` convolved with its own
    ``depth_multiplier`` filters, output ``(N, Ho, Wo, C * depth_multiplier)``.

    ``kernel_size``, ``strides``, ``padding`` (``"valid"``, ``"same"`` or explicit ints/pairs as in
    :class:`Conv2D`), ``dilation_rate``, ``activation``, ``use_bias``, ``depthwise_regularizer``,
    ``bias_regularizer``, ``activity_regularizer``, ``depthwise_constraint``, ``bias_constraint`` as
    in Keras. Kernel
    ``depthwise_kernel`` ``(kh, kw, C, depth_multiplier)``, bias ``(C * depth_multiplier,)``.
    """

    def out_channels(self, input_shape):
        return input_shape[-1] * self.depth_multiplier

    def build(self, input_shape):
        super().build(input_shape)
        if self.use_bias:
            self.add_param("bias", (self.channels * self.depth_multiplier,), self.bias_initializer)

    def forward(self, x, training=False):
        self.check_input(x)
        return self.activate(self.depthwise_forward(x, self.params.get("bias"), training))

    def backward_preactivation(self, dz):
        dx, dbias = self.depthwise_backward(dz)
        if self.use_bias:
            self.grads["bias"] = dbias
        return dx


@register_layer
class DepthwiseConv1D(DepthwiseConv2D):
    """Keras's ``DepthwiseConv1D`` over ``(N, L, C)``: kernel ``(k, C, depth_multiplier)``."""

    rank = 1


@register_layer
class SeparableConv2D(_Depthwise):
    """Keras's ``SeparableConv2D``: a depthwise convolution (no bias) then a 1x1 convolution to
    ``filters`` channels, plus the bias, then the activation.

    Kernels ``depthwise_kernel`` ``(kh, kw, C, depth_multiplier)`` and ``pointwise_kernel``
    ``(1, 1, C * depth_multiplier, filters)``, bias ``(filters,)``; the other arguments as in
    :class:`DepthwiseConv2D`. ``pointwise_regularizer`` and ``pointwise_constraint`` apply to the
    pointwise kernel, as in Keras.
    """

    weight_options = {"depthwise_kernel": "depthwise", "pointwise_kernel": "pointwise", "bias": "bias"}

    def __init__(self, filters, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 pointwise_initializer="glorot_uniform", **kwargs):
        super().__init__(kernel_size, strides, padding, depth_multiplier, **kwargs)
        self.filters = validation.positive_int(filters, "filters", type(self).__name__)
        self.pointwise_initializer = initializers.get(pointwise_initializer)

    def out_channels(self, input_shape):
        return self.filters

    def build(self, input_shape):
        super().build(input_shape)
        self.add_param("pointwise_kernel",
                       (1,) * self.rank + (self.channels * self.depth_multiplier, self.filters),
                       self.pointwise_initializer)
        if self.use_bias:
            self.add_param("bias", (self.filters,), self.bias_initializer)

    def _pointwise(self):
        return self.params["pointwise_kernel"].reshape(-1, self.filters)

    def forward(self, x, training=False):
        self.check_input(x)
        self._d = self.depthwise_forward(x, None, training)
        z = self._d @ self._pointwise()
        if self.use_bias:
            z += self.params["bias"]
        return self.activate(z)

    def backward_preactivation(self, dz):
        d2 = self._d.reshape(-1, self._d.shape[-1])
        dz2 = dz.reshape(-1, self.filters)
        self.grads["pointwise_kernel"] = (d2.T @ dz2).reshape(self.params["pointwise_kernel"].shape)
        if self.use_bias:
            self.grads["bias"] = dz2.sum(axis=0)
        dx, _ = self.depthwise_backward(dz @ self._pointwise().T)
        return dx

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "pointwise_initializer": initializers.serialize(self.pointwise_initializer)}


@register_layer
class SeparableConv1D(SeparableConv2D):
    """Keras's ``SeparableConv1D`` over ``(N, L, C)``: kernels ``(k, C, M)`` and ``(1, C * M, filters)``."""

    rank = 1
