"""Export a network to ONNX, which onnxruntime (servers, phones, browsers) and Triton run.

``net.export_onnx("model.onnx")`` writes a graph whose input is what :meth:`Net.predict` takes — a
channels-last batch ``(batch, *input_shape)`` with a dynamic batch axis — and whose output is what it
returns, in inference mode (dropout off, batch norm with its moving statistics). A ``Net``'s tensors
are named ``input`` and ``output``; a graph ``Model``'s are named as its inputs and outputs
(``model.input_names``, ``model.output_names``), one ONNX input and output each, and its merge layers
become ``Sum``/``Sub``/``Mul``/``Max``/``Min``/``Concat`` (``Average`` a ``Sum`` times ``1/n``,
``Dot`` of vectors a ``ReduceSum`` of the product); a shared layer is written once per call.

ONNX's convolutions and pools are channels-first (``N, C, *spatial``), so the exporter keeps track of
each tensor's layout and inserts a ``Transpose`` only where it changes: into channels-first before the
first convolution or pool, back to channels-last before a ``Flatten``, ``Reshape`` or ``Dense`` (so the
flattened order is modularcnn's, and Dense weights apply unchanged) and at the output. Element-wise
layers run in whichever layout the tensor is in.

Needs the ``onnx`` package (``pip install modularcnn[onnx]``); it is imported only here.
"""

import os

import numpy as np

from ..saving.atomic import atomic_path

#: The opsets the exporter writes (Resize, Softmax and the pooling attributes as of opset 13).
MIN_OPSET = 13


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'modularcnn[onnx]'") from None
    return onnx


class _Graph:
    """The nodes and initialisers being written, with unique names."""

    def __init__(self, onnx, dtype, opset=17):
        self.onnx, self.helper = onnx, onnx.helper
        self.dtype = np.dtype(dtype)
        self.opset = int(opset)
        self.nodes, self.initializers, self.counter = [], [], 0

    def name(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def constant(self, hint, array, dtype=None):
        name = self.name(hint)
        array = np.ascontiguousarray(array, dtype=dtype or self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, hint, **attributes):
        output = self.name(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def scalar(self, hint, value):
        """A constant of the graph's dtype and shape ``()``, broadcasting against any tensor."""
        return self.constant(hint, np.asarray(value))

    def reduce_mean(self, name, axes, hint):
        """``ReduceMean`` keeping the axes: ``axes`` an attribute up to opset 17, an input from 18."""
        if self.opset >= 18:
            return self.node("ReduceMean", [name, self.constant(f"{hint}_axes", list(axes), np.int64)],
                             hint, keepdims=1)
        return self.node("ReduceMean", [name], hint, axes=list(axes), keepdims=1)


class _Tensor:
    """A tensor of the graph: its name, its per-sample rank and whether it is channels-first."""

    def __init__(self, name, sample_rank, channels_first=False):
        self.name, self.sample_rank, self.channels_first = name, sample_rank, channels_first

    @property
    def spatial_rank(self):
        return self.sample_rank - 1


def _channels_first(graph, tensor, hint):
    if tensor.channels_first or tensor.sample_rank < 2:
        return _Tensor(tensor.name, tensor.sample_rank, channels_first=tensor.sample_rank >= 2)
    r = tensor.spatial_rank
    name = graph.node("Transpose", [tensor.name], f"{hint}_to_nchw", perm=[0, r + 1, *range(1, r + 1)])
    return _Tensor(name, tensor.sample_rank, channels_first=True)


def _channels_last(graph, tensor, hint):
    if not tensor.channels_first:
        return tensor
    r = tensor.spatial_rank
    name = graph.node("Transpose", [tensor.name], f"{hint}_to_nhwc", perm=[0, *range(2, r + 2), 1])
    return _Tensor(name, tensor.sample_rank, channels_first=False)


def _scalar(graph, hint, value):
    return graph.constant(hint, np.array(value))


def _rectifier(graph, function, x, hint):
    """Keras's ``relu(x, negative_slope, max_value, threshold)`` from primitive ops."""
    if function.plain:
        return graph.node("Relu", [x], f"{hint}_relu")
    threshold = _scalar(graph, f"{hint}_threshold", function.threshold)
    above = graph.node("Greater", [x, threshold], f"{hint}_above")
    if function.negative_slope:
        shifted = graph.node("Sub", [x, threshold], f"{hint}_shifted")
        below = graph.node("Mul", [shifted, _scalar(graph, f"{hint}_slope", function.negative_slope)],
                           f"{hint}_below")
    else:
        below = _scalar(graph, f"{hint}_zero", 0.0)
    y = graph.node("Where", [above, x, below], f"{hint}_relu")
    if function.max_value is not None:
        y = graph.node("Min", [y, _scalar(graph, f"{hint}_max", function.max_value)], f"{hint}_clip")
    return y


def _gelu(graph, function, x, hint):
    """``x * Phi(x)``: exact with Erf, or Keras's tanh approximation (ONNX's Gelu needs opset 20)."""
    if function.approximate:
        cube = graph.node("Mul", [graph.node("Mul", [x, x], f"{hint}_square"), x], f"{hint}_cube")
        inner = graph.node("Add", [x, graph.node("Mul", [cube, _scalar(graph, f"{hint}_c", 0.044715)],
                                                 f"{hint}_scaled_cube")], f"{hint}_inner")
        inner = graph.node("Mul", [inner, _scalar(graph, f"{hint}_k", np.sqrt(2 / np.pi))],
                           f"{hint}_inner_scaled")
        phi = graph.node("Tanh", [inner], f"{hint}_tanh")
    else:
        scaled = graph.node("Mul", [x, _scalar(graph, f"{hint}_rsqrt2", 1 / np.sqrt(2))], f"{hint}_scaled")
        phi = graph.node("Erf", [scaled], f"{hint}_erf")
    one_plus = graph.node("Add", [phi, _scalar(graph, f"{hint}_one", 1.0)], f"{hint}_one_plus")
    half_x = graph.node("Mul", [x, _scalar(graph, f"{hint}_half", 0.5)], f"{hint}_half_x")
    return graph.node("Mul", [half_x, one_plus], f"{hint}_gelu")


def _hard_sigmoid(graph, x, hint):
    # Keras 3's relu6(x + 3) / 6; ONNX's HardSigmoid is max(0, min(1, alpha * x + beta)).
    return graph.node("HardSigmoid", [x], f"{hint}_hard_sigmoid", alpha=1 / 6, beta=0.5)


#: Activations that are one ONNX op with no attributes.
_ONE_OP = {"Sigmoid": "Sigmoid", "Tanh": "Tanh", "Softplus": "Softplus",
           "Softsign": "Softsign", "Exponential": "Exp"}


def _activation(graph, function, tensor, hint):
    """Apply one of modularcnn's activation objects to ``tensor`` (any layout, except a softmax along
    an axis other than the channels, which is applied channels-last)."""
    kind = type(function).__name__
    x = tensor.name
    if kind == "Linear":
        return tensor
    if kind in ("ReLU", "ReLU6"):
        name = _rectifier(graph, function, x, hint)
    elif kind in _ONE_OP:
        name = graph.node(_ONE_OP[kind], [x], f"{hint}_{kind.lower()}")
    elif kind == "LeakyReLU":
        name = graph.node("LeakyRelu", [x], f"{hint}_leaky_relu", alpha=function.alpha)
    elif kind == "ELU":
        name = graph.node("Elu", [x], f"{hint}_elu", alpha=function.alpha)
    elif kind == "SELU":
        name = graph.node("Selu", [x], f"{hint}_selu", alpha=function.ALPHA, gamma=function.SCALE)
    elif kind == "GELU":
        name = _gelu(graph, function, x, hint)
    elif kind == "SiLU":
        name = graph.node("Mul", [x, graph.node("Sigmoid", [x], f"{hint}_sigmoid")], f"{hint}_silu")
    elif kind == "HardSigmoid":
        name = _hard_sigmoid(graph, x, hint)
    elif kind == "HardSiLU":
        name = graph.node("Mul", [x, _hard_sigmoid(graph, x, hint)], f"{hint}_hard_silu")
    elif kind == "Softmax":
        if function.axis == -1:  # the channels axis, whichever the layout
            axis = 1 if tensor.channels_first else -1
        else:  # an axis counted in modularcnn's channels-last layout
            tensor = _channels_last(graph, tensor, hint)
            axis = function.axis
        name = graph.node("Softmax", [tensor.name], f"{hint}_softmax", axis=axis)
    else:
        raise ValueError(f"ONNX export: activation {function.name!r} ({kind}) is not supported; "
                         f"supported: {', '.join(EXPORTED_ACTIVATIONS)}")
    return _Tensor(name, tensor.sample_rank, tensor.channels_first)


#: The activation names (modularcnn.activations) the exporter writes; custom pairs cannot be.
EXPORTED_ACTIVATIONS = ("linear", "relu", "relu6", "leakyrelu", "elu", "selu", "gelu", "silu",
                        "softplus", "softsign", "exponential", "hard_sigmoid", "hard_silu",
                        "sigmoid", "tanh", "softmax")


def _flat_pads(pads):
    """modularcnn's ``((before, after), ...)`` as ONNX's ``[b1, b2, ..., e1, e2, ...]``."""
    return [int(b) for b, _ in pads] + [int(a) for _, a in pads]


def _convolution(graph, layer, tensor):
    x = _channels_first(graph, tensor, layer.name)
    r = layer.rank
    kernel = layer.params["kernel"]
    transposed = "Transpose" in type(layer).__name__
    # Ours: (*K, C, F) and, transposed, (*K, F, C); ONNX: (F, C, *K) and, transposed, (C, F, *K).
    weight = graph.constant(f"{layer.name}_kernel", np.transpose(kernel, (r + 1, r, *range(r))))
    inputs = [x.name, weight]
    if layer.use_bias:
        inputs.append(graph.constant(f"{layer.name}_bias", layer.params["bias"]))
    pads = layer.pads
    if getattr(layer, "pad_value", 0) and any(b or a for b, a in pads):
        # ONNX's Conv pads with zeros: pad with the layer's value first, then convolve unpadded.
        flat = _flat_pads(((0, 0), (0, 0), *pads))
        inputs[0] = graph.node("Pad", [x.name, graph.constant(f"{layer.name}_pads", flat, np.int64),
                                       _scalar(graph, f"{layer.name}_pad_value", layer.pad_value)],
                               f"{layer.name}_pad", mode="constant")
        pads = ((0, 0),) * r
    attributes = {"kernel_shape": list(layer.filter_size), "strides": list(layer.stride),
                  "pads": _flat_pads(pads)}
    if not transposed:
        attributes.update(dilations=list(layer.dilation_rate), group=int(layer.groups))
    if transposed:
        spatial = layer.input_shape[:-1]
        natural = [(n - 1) * s + k - b - a for n, s, k, (b, a)
                   in zip(spatial, layer.stride, layer.filter_size, layer.pads)]
        extra = [o - n for o, n in zip(layer.out_spatial, natural)]
        if any(e < 0 or e >= s for e, s in zip(extra, layer.stride)):
            raise ValueError(f"ONNX export: {layer.describe()}: output size {layer.out_spatial} "
                             "cannot be expressed with ONNX's output_padding")
        attributes["output_padding"] = extra
    name = graph.node("ConvTranspose" if transposed else "Conv", inputs, layer.name, **attributes)
    return _activation(graph, layer.activation, _Tensor(name, tensor.sample_rank, True), layer.name)


def _pool(graph, layer, tensor):
    x = _channels_first(graph, tensor, layer.name)
    attributes = {"kernel_shape": list(layer.pool_size), "strides": list(layer.stride),
                  "pads": _flat_pads(layer.pads)}
    if type(layer).__name__.startswith("Max"):
        name = graph.node("MaxPool", [x.name], layer.name, **attributes)
    else:  # padded cells are not counted, as in modularcnn (and Keras)
        name = graph.node("AveragePool", [x.name], layer.name, count_include_pad=0, **attributes)
    return _Tensor(name, tensor.sample_rank, True)


def _global_pool(graph, layer, tensor):
    x = _channels_first(graph, tensor, layer.name)
    op = "GlobalMaxPool" if "Max" in type(layer).__name__ else "GlobalAveragePool"
    pooled = graph.node(op, [x.name], layer.name)
    if layer.keepdims:  # (N, C, 1, ..., 1): channels-first, turned back where needed
        return _Tensor(pooled, tensor.sample_rank, True)
    name = graph.node("Flatten", [pooled], f"{layer.name}_flatten", axis=1)
    return _Tensor(name, 1)


def _dense(graph, layer, tensor):
    x = _channels_last(graph, tensor, layer.name)
    name = graph.node("MatMul", [x.name, graph.constant(f"{layer.name}_kernel", layer.params["kernel"])],
                      layer.name)
    if layer.use_bias:
        name = graph.node("Add", [name, graph.constant(f"{layer.name}_bias", layer.params["bias"])],
                          f"{layer.name}_bias_add")
    return _activation(graph, layer.activation, _Tensor(name, tensor.sample_rank), layer.name)


def _flatten(graph, layer, tensor):
    x = _channels_last(graph, tensor, layer.name)
    return _Tensor(graph.node("Flatten", [x.name], layer.name, axis=1), 1)


def _reshape(graph, layer, tensor):
    x = _channels_last(graph, tensor, layer.name)
    shape = graph.constant(f"{layer.name}_shape", [0, *layer.output_shape], dtype=np.int64)
    return _Tensor(graph.node("Reshape", [x.name, shape], layer.name), len(layer.output_shape))


def _batch_norm(graph, layer, tensor):
    p = layer.params
    features = p["moving_mean"].shape
    gamma = p["gamma"] if layer.scale else np.ones(features)
    beta = p["beta"] if layer.center else np.zeros(features)
    rank = len(layer.input_shape) + 1
    last_axis = layer.axis % rank == rank - 1
    if last_axis and (tensor.channels_first or tensor.sample_rank == 1):
        inputs = [tensor.name] + [graph.constant(f"{layer.name}_{key}", value) for key, value in
                                  (("gamma", gamma), ("beta", beta), ("moving_mean", p["moving_mean"]),
                                   ("moving_variance", p["moving_variance"]))]
        name = graph.node("BatchNormalization", inputs, layer.name, epsilon=layer.epsilon)
        return _Tensor(name, tensor.sample_rank, tensor.channels_first)
    # Channels-last, or a feature axis other than the channels: the same affine map, broadcast.
    tensor = _channels_last(graph, tensor, layer.name)
    broadcast = (1,) + tuple(layer._broadcast[1:])
    scale = gamma / np.sqrt(p["moving_variance"] + layer.epsilon)
    shift = beta - p["moving_mean"] * scale
    name = graph.node("Mul", [tensor.name, graph.constant(f"{layer.name}_scale", scale.reshape(broadcast))],
                      f"{layer.name}_scale")
    name = graph.node("Add", [name, graph.constant(f"{layer.name}_shift", shift.reshape(broadcast))],
                      layer.name)
    return _Tensor(name, tensor.sample_rank)


def _upsampling(graph, layer, tensor):
    x = _channels_first(graph, tensor, layer.name)
    roi = graph.constant(f"{layer.name}_roi", np.zeros(0))
    scales = graph.constant(f"{layer.name}_scales", [1, 1, *layer.size], dtype=np.float32)
    if layer.interpolation == "bilinear":  # TensorFlow's half-pixel centres, clamped at the border
        name = graph.node("Resize", [x.name, roi, scales], layer.name, mode="linear",
                          coordinate_transformation_mode="half_pixel")
    else:
        name = graph.node("Resize", [x.name, roi, scales], layer.name, mode="nearest",
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return _Tensor(name, tensor.sample_rank, True)


def _residual(graph, layer, tensor):
    block = _chain(graph, layer.block, tensor)
    shortcut = _chain(graph, layer.shortcut_layers, tensor) if layer.shortcut_layers else tensor
    if block.channels_first != shortcut.channels_first:
        block, shortcut = (_channels_first(graph, t, layer.name) for t in (block, shortcut))
    return _Tensor(graph.node("Add", [block.name, shortcut.name], layer.name), block.sample_rank,
                   block.channels_first)


def _identity(graph, layer, tensor):
    return tensor


def _activation_layer(graph, layer, tensor):
    return _activation(graph, layer.activation, tensor, layer.name)


def _prelu(graph, layer, tensor):
    # alpha has the per-sample channels-last shape (1 along shared axes): it broadcasts as it is.
    x = _channels_last(graph, tensor, layer.name)
    slope = graph.constant(f"{layer.name}_alpha", layer.params["alpha"])
    return _Tensor(graph.node("PRelu", [x.name, slope], layer.name), tensor.sample_rank)


def _depthwise(graph, layer, tensor):
    """Depthwise (and separable) convolutions: ONNX ``Conv`` with ``group = C`` (weight
    ``(C * M, 1, *K)``, output channel ``c * M + m`` as ours), then for separable a 1x1 ``Conv``."""
    x = _channels_first(graph, tensor, layer.name)
    r = layer.rank
    separable = "Separable" in type(layer).__name__
    weight = graph.constant(f"{layer.name}_depthwise_kernel",
                            np.transpose(layer.grouped_kernel(), (r + 1, r, *range(r))))
    inputs = [x.name, weight]
    if layer.use_bias and not separable:
        inputs.append(graph.constant(f"{layer.name}_bias", layer.params["bias"]))
    name = graph.node("Conv", inputs, f"{layer.name}_depthwise" if separable else layer.name,
                      kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                      pads=_flat_pads(layer.pads), dilations=list(layer.dilation_rate),
                      group=layer.channels)
    if separable:
        pointwise = layer.params["pointwise_kernel"]
        inputs = [name, graph.constant(f"{layer.name}_pointwise_kernel",
                                       np.transpose(pointwise, (r + 1, r, *range(r))))]
        if layer.use_bias:
            inputs.append(graph.constant(f"{layer.name}_bias", layer.params["bias"]))
        name = graph.node("Conv", inputs, layer.name, kernel_shape=[1] * r)
    return _activation(graph, layer.activation, _Tensor(name, tensor.sample_rank, True), layer.name)


def _spatial_axes(tensor):
    """The ONNX axes of the spatial dimensions of ``tensor`` in its current layout."""
    first = 2 if tensor.channels_first else 1
    return list(range(first, first + tensor.spatial_rank))


def _zero_padding(graph, layer, tensor):
    rank = tensor.sample_rank + 1
    begins, ends = [0] * rank, [0] * rank
    for axis, (before, after) in zip(_spatial_axes(tensor), layer.pairs):
        begins[axis], ends[axis] = before, after
    pads = graph.constant(f"{layer.name}_pads", begins + ends, np.int64)
    name = graph.node("Pad", [tensor.name, pads], layer.name, mode="constant")
    return _Tensor(name, tensor.sample_rank, tensor.channels_first)


def _cropping(graph, layer, tensor):
    axes = _spatial_axes(tensor)
    starts = [before for before, _ in layer.pairs]
    ends = [n - after for n, (_, after) in zip(layer.input_shape[:-1], layer.pairs)]
    name = graph.node("Slice", [tensor.name, graph.constant(f"{layer.name}_starts", starts, np.int64),
                                graph.constant(f"{layer.name}_ends", ends, np.int64),
                                graph.constant(f"{layer.name}_axes", axes, np.int64)], layer.name)
    return _Tensor(name, tensor.sample_rank, tensor.channels_first)


def _permute(graph, layer, tensor):
    x = _channels_last(graph, tensor, layer.name)
    name = graph.node("Transpose", [x.name], layer.name, perm=[0, *layer.dims])
    return _Tensor(name, tensor.sample_rank)


def _rescaling(graph, layer, tensor):
    if np.ndim(layer.scale) or np.ndim(layer.offset):
        tensor = _channels_last(graph, tensor, layer.name)  # the constants broadcast channels-last
    name = graph.node("Mul", [tensor.name, graph.constant(f"{layer.name}_scale", layer.scale)],
                      f"{layer.name}_scale")
    name = graph.node("Add", [name, graph.constant(f"{layer.name}_offset", layer.offset)], layer.name)
    return _Tensor(name, tensor.sample_rank, tensor.channels_first)


def _standardise(graph, x, axes, epsilon, hint):
    """``(x - mean) / sqrt(var + epsilon)`` over ``axes`` (biased variance), from basic operators."""
    centred = graph.node("Sub", [x, graph.reduce_mean(x, axes, f"{hint}_mean")], f"{hint}_centred")
    variance = graph.reduce_mean(graph.node("Mul", [centred, centred], f"{hint}_squares"), axes,
                                 f"{hint}_variance")
    std = graph.node("Sqrt", [graph.node("Add", [variance, graph.scalar(f"{hint}_epsilon", epsilon)],
                                         f"{hint}_variance_eps")], f"{hint}_std")
    return graph.node("Div", [centred, std], f"{hint}_normalised")


def _affine(graph, layer, name, broadcast):
    """``gamma * name + beta`` with the layer's parameters reshaped to ``broadcast`` (batch axis 1)."""
    if layer.scale:
        name = graph.node("Mul", [name, graph.constant(f"{layer.name}_gamma",
                                                       layer.params["gamma"].reshape(broadcast))],
                          f"{layer.name}_gamma")
    if layer.center:
        name = graph.node("Add", [name, graph.constant(f"{layer.name}_beta",
                                                       layer.params["beta"].reshape(broadcast))],
                          f"{layer.name}_beta")
    return name


def _layer_norm(graph, layer, tensor):
    x = _channels_last(graph, tensor, layer.name)
    normalised = _standardise(graph, x.name, layer._norm_axes, layer.epsilon, layer.name)
    broadcast = (1,) + tuple(layer._broadcast[1:])
    return _Tensor(_affine(graph, layer, normalised, broadcast), tensor.sample_rank)


def _group_norm(graph, layer, tensor):
    x = _channels_last(graph, tensor, layer.name)
    channels = layer.input_shape[-1]
    grouped_shape = [0, *layer.input_shape[:-1], layer.groups, channels // layer.groups]
    grouped = graph.node("Reshape", [x.name, graph.constant(f"{layer.name}_grouped_shape", grouped_shape,
                                                            np.int64)], f"{layer.name}_grouped")
    rank = len(grouped_shape)
    normalised = _standardise(graph, grouped, [*range(1, rank - 2), rank - 1], layer.epsilon, layer.name)
    name = graph.node("Reshape", [normalised, graph.constant(f"{layer.name}_shape",
                                                             [0, *layer.input_shape], np.int64)],
                      f"{layer.name}_ungrouped")
    return _Tensor(_affine(graph, layer, name, (channels,)), tensor.sample_rank)


_CONVOLUTIONS = ("Convolutional", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                 "Conv3DTranspose")
_POOLS = ("MaxPooling", "MaxPooling1D", "MaxPooling2D", "MaxPool2D", "MaxPooling3D", "AveragePooling",
          "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool1D", "AvgPool2D",
          "AvgPool3D", "MaxPool1D", "MaxPool3D")
_GLOBAL_POOLS = tuple(f"Global{kind}{r}D" for kind in ("AveragePooling", "MaxPooling", "AvgPool", "MaxPool")
                      for r in (1, 2, 3))
#: Layers that only act in training: the identity in the exported (inference) graph.
_TRAINING_ONLY = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                  "GaussianDropout")
#: modularcnn layer class -> exporter(graph, layer, tensor) -> tensor.
EXPORTERS = {
    **{name: _convolution for name in _CONVOLUTIONS},
    **{name: _pool for name in _POOLS},
    **{name: _global_pool for name in _GLOBAL_POOLS},
    **{name: _identity for name in _TRAINING_ONLY},
    **{f"ZeroPadding{r}D": _zero_padding for r in (1, 2, 3)},
    **{f"Cropping{r}D": _cropping for r in (1, 2, 3)},
    **{name: _depthwise for name in ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
                                     "SeparableConv2D")},
    **{name: _activation_layer for name in ("Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")},
    "Dense": _dense, "Flatten": _flatten, "Reshape": _reshape, "Permute": _permute,
    "Rescaling": _rescaling, "BatchNormalization": _batch_norm, "LayerNormalization": _layer_norm,
    "GroupNormalization": _group_norm, "PReLU": _prelu,
    "UpSampling1D": _upsampling, "UpSampling2D": _upsampling, "UpSampling3D": _upsampling,
    "Residual": _residual, "NestedModel": lambda graph, layer, tensor: _nested(graph, layer, [tensor]),
}
#: Merge layers (several input tensors), exported by :func:`_merge`.
MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot")


def _merge(graph, layer, tensors):
    """A merge layer on channels-last tensors (their axes and broadcasting are modularcnn's)."""
    kind = type(layer).__name__
    names = [_channels_last(graph, t, layer.name).name for t in tensors]
    rank = len(layer.output_shape)
    if kind in ("Add", "Average"):
        name = graph.node("Sum", names, layer.name) if len(names) > 1 else names[0]
        if kind == "Average":
            name = graph.node("Mul", [name, _scalar(graph, f"{layer.name}_1_over_n", 1 / len(names))],
                              f"{layer.name}_mean")
    elif kind == "Subtract":
        name = graph.node("Sub", names, layer.name)
    elif kind == "Multiply":
        name = names[0]
        for other in names[1:]:
            name = graph.node("Mul", [name, other], layer.name)
    elif kind in ("Maximum", "Minimum"):
        name = graph.node("Max" if kind == "Maximum" else "Min", names, layer.name)
    elif kind == "Concatenate":
        name = graph.node("Concat", names, layer.name, axis=int(layer._axis))
    else:
        name = _dot(graph, layer, names)
    return _Tensor(name, rank)


def _dot(graph, layer, names):
    """``Dot`` of two vectors per sample, ``(N, d) . (N, d) -> (N, 1)`` (optionally cosine)."""
    if any(len(shape) != 1 for shape in layer.input_shape):
        raise ValueError(f"ONNX export: {layer.describe()}: Dot exports for vectors (N, d) only, got "
                         f"inputs {[(None, *s) for s in layer.input_shape]}")
    if layer.normalize:
        normed = []
        for k, name in enumerate(names):
            square = graph.node("ReduceSum", [graph.node("Mul", [name, name], f"{layer.name}_sq{k}"),
                                              graph.constant(f"{layer.name}_axis", [1], np.int64)],
                                f"{layer.name}_sumsq{k}", keepdims=1)
            norm = graph.node("Sqrt", [graph.node("Max", [square, _scalar(
                graph, f"{layer.name}_eps", layer.EPSILON)], f"{layer.name}_clip{k}")],
                f"{layer.name}_norm{k}")
            normed.append(graph.node("Div", [name, norm], f"{layer.name}_unit{k}"))
        names = normed
    product = graph.node("Mul", names, f"{layer.name}_product")
    return graph.node("ReduceSum", [product, graph.constant(f"{layer.name}_axes", [1], np.int64)],
                      layer.name, keepdims=1)


def _nested(graph, layer, tensors):
    """A Net or Model used as a layer: its own layers on ``tensors``."""
    network = layer.model
    if hasattr(network, "graph"):
        return _graph_body(graph, network, tensors)[0]
    return _chain(graph, network.layers, tensors[0])


def _graph_body(graph, model, tensors):
    """The output tensors of ``model`` (a graph) run on ``tensors`` (one per input): its nodes in
    topological order, a shared layer exported once per call."""
    made = {id(t): tensor for t, tensor in zip(model.graph.inputs, tensors)}
    for node in model.graph.nodes:
        if not node.inputs:
            continue
        inputs = [made[id(t)] for t in node.inputs]
        kind = type(node.layer).__name__
        if kind in MERGES:
            made[id(node.output)] = _merge(graph, node.layer, inputs)
        elif kind == "NestedModel":
            made[id(node.output)] = _nested(graph, node.layer, inputs)
        else:
            made[id(node.output)] = _chain(graph, [node.layer], inputs[0])
    return [made[id(t)] for t in model.graph.outputs]


def _chain(graph, layers, tensor):
    for layer in layers:
        exporter = EXPORTERS.get(type(layer).__name__)
        if exporter is None:
            raise ValueError(f"ONNX export: {layer.describe()} is not supported; layers that export: "
                             f"{', '.join(sorted(EXPORTERS))}")
        tensor = exporter(graph, layer, tensor)
    return tensor


def onnx_model(net, opset=17):
    """The ``onnx.ModelProto`` of ``net`` (checked with ``onnx.checker``)."""
    onnx = _onnx()
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export_onnx: opset must be an int from {MIN_OPSET} to {newest} (the "
                         f"installed onnx's newest), got {opset!r}")
    if not net.layers:
        raise ValueError("export_onnx: the network has no layers")
    graph = _Graph(onnx, net.dtype, opset)
    element = onnx.helper.np_dtype_to_tensor_dtype(net.dtype)
    if hasattr(net, "graph"):
        # A graph: ONNX inputs and outputs named as the model's (its Input and output layer names).
        input_names, output_names = list(net.input_names), list(net.output_names)
        input_shapes, output_shapes = net.input_shapes, net.output_shapes
        starts = [_Tensor(name, len(shape)) for name, shape in zip(input_names, input_shapes)]
        ends = _graph_body(graph, net, starts)
    else:
        input_names, output_names = ["input"], ["output"]
        input_shapes, output_shapes = [net.input_shape], [net.output_shape]
        ends = [_chain(graph, net.layers, _Tensor("input", len(net.input_shape)))]
    inputs = [onnx.helper.make_tensor_value_info(name, element, ["batch", *shape])
              for name, shape in zip(input_names, input_shapes)]
    for name, tensor in zip(output_names, ends):
        tensor = _channels_last(graph, tensor, name)
        graph.nodes.append(onnx.helper.make_node("Identity", [tensor.name], [name], name=name))
    outputs = [onnx.helper.make_tensor_value_info(name, element, ["batch", *shape])
               for name, shape in zip(output_names, output_shapes)]
    body = onnx.helper.make_graph(graph.nodes, net.name or "modularcnn", inputs, outputs,
                                  initializer=graph.initializers)
    model = onnx.helper.make_model(body, opset_imports=[onnx.helper.make_opsetid("", int(opset))],
                                   producer_name="modularcnn")
    model.ir_version = min(model.ir_version, 8)  # readable by onnxruntime releases of recent years
    onnx.checker.check_model(model)
    return model


def export_onnx(net, path, opset=17):
    """Write ``net`` as an ONNX model file at ``path`` (atomically); returns the path."""
    model = onnx_model(net, opset)
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(model.SerializeToString())
    return os.fspath(path)
